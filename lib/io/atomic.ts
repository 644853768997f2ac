// Atomic file replacement and chunked file I/O. A crash (power loss, SIGKILL) at any moment of
// writeFileAtomic leaves the target either as it was or fully replaced, never torn:
//   1. the data goes to a fresh temporary file in the target's directory (same file system, so
//      the rename below is atomic), opened with O_EXCL;
//   2. fsync(temp): the data is on disk before the name points at it;
//   3. rename(temp, target): POSIX replaces the name atomically;
//   4. fsync(directory): the rename itself survives a power loss.
// The temporary name is hidden and never ends in the target's extension, so a crashed write's
// leftover is never taken for a checkpoint: `.<name>.tmp-<pid>-<12 hex digits>`.
import { randomBytes } from 'node:crypto';
import { type FileHandle, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { SeqfuseError } from '../errors.js';

/** The largest piece handed to one read or write call (Node's fs takes at most 2 GiB − 1). */
const IO_CHUNK = 2 ** 30;

/** ERR_IO naming the operation, the path and the OS error (its code and message). */
export function ioError(where: string, what: string, e: unknown): SeqfuseError {
  return new SeqfuseError('ERR_IO', `${where}: could not ${what}: ${(e as Error).message}`);
}

/** The temporary file a write to `path` goes through (see above). */
function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
}

/** Writes all of `data` at the file's current position (in pieces the fs API accepts). */
async function writeAll(fh: FileHandle, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) {
    const { bytesWritten } = await fh.write(data, off, Math.min(IO_CHUNK, data.length - off));
    off += bytesWritten;
  }
}

/** Fills `dst` from the file at byte `position`; a file shorter than that is an ERR_IO. */
export async function readAt(fh: FileHandle, dst: Uint8Array, position: number, where: string): Promise<void> {
  for (let off = 0; off < dst.length;) {
    const { bytesRead } = await fh.read(dst, off, Math.min(IO_CHUNK, dst.length - off), position + off);
    if (bytesRead === 0)
      throw new SeqfuseError('ERR_IO', `${where}: the file ended at byte ${position + off}, before byte ${position + dst.length} (was it truncated while being read?)`);
    off += bytesRead;
  }
}

/**
 * Replaces the file at `path` with the concatenation of `chunks`, atomically and durably (see
 * the top of this file). Nothing is copied: each chunk is written as it is. On failure the
 * temporary file is removed and the old file stays; errors are ERR_IO messages starting with
 * `where` (the public function's name), naming the path and the OS error.
 */
export async function writeFileAtomic(path: string, chunks: readonly Uint8Array[], where = 'writeFileAtomic'): Promise<void> {
  const tmp = tempPathFor(path);
  let fh: FileHandle | undefined;
  let created = false;
  let step = `create '${tmp}'`;
  try {
    fh = await open(tmp, 'wx');
    created = true;
    step = `write '${tmp}'`;
    for (const c of chunks) await writeAll(fh, c);
    step = `fsync '${tmp}'`;
    await fh.sync();
    step = `close '${tmp}'`;
    await fh.close();
    fh = undefined;
    step = `rename '${tmp}' to '${path}'`;
    await rename(tmp, path);
  } catch (e) {
    await fh?.close().catch(() => undefined);
    if (created) await unlink(tmp).catch(() => undefined);
    throw ioError(where, step, e);
  }
  const dir = dirname(path);
  try {
    const dh = await open(dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  } catch (e) {
    throw ioError(where, `fsync the directory '${dir}' after replacing '${path}' (the new file is in place but may not survive a power loss)`, e);
  }
}
