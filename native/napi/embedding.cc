// native/napi/embedding.cc — bindings of embedding / embeddingBackward (ops/embedding.h).
// ids are data, not shape: they are scanned and copied on the thread that runs the op, right
// before the kernel, and the kernel reads the checked copy (on CUDA: a device copy of it), so no
// id that JS writes while an async call runs can send a read or write out of the table.
#include <cmath>
#include <vector>
#include "napi/napi_util.h"
#include "ops/embedding.h"

namespace seqfuse::napi {

static int64_t int_arg(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name, double lo, double hi) {
  double v = number_arg(info, i, op, name, lo, hi);
  if (v != std::floor(v)) fail(ErrorCode::Arg, op, ": expected an integer ", name, " but received ", v);
  return int64_t(v);
}

// A checked copy of the ids (on a's device): every id in [0, vocab).
static IndexArg checked_ids(const char* op, const EmbeddingArgs& a, const IndexSource& ids) {
  std::vector<int32_t> v = ids.read(op);
  for (int64_t i = 0; i < a.tokens; ++i)
    if (v[size_t(i)] < 0 || v[size_t(i)] >= a.vocab)
      fail(ErrorCode::Arg, op, ": ids[", i, "] = ", v[size_t(i)], " is out of range [0, ", a.vocab, ")");
  return IndexArg(a.device, std::move(v), op);
}

// Checks shared by forward and backward. rows: [vocab, dim] tensor (table or dtable);
// grad: out or dout [...ids.shape, dim]; pos: positions or dpositions.
static void check_common(const char* op, const TensorArg& ids, const TensorArg& rows, const TensorArg& pos,
                         const TensorArg& grad, const char* rows_name) {
  check_device(op, {&rows, &pos, &grad});  // ids: on either device (IndexSource)
  check_dtype(op, ids, DType::I32);
  check_min_dims(op, ids, 1);
  check_float(op, rows);
  check_same_dtype(op, pos, rows);
  check_same_dtype(op, grad, rows);
  if (rows.ndim != 2) fail(ErrorCode::Shape, op, ": expected ", rows_name, " of shape [vocab, dim] but received ", rows.shape_str());
  const int64_t dim = rows.shape[1];
  if (pos.present && (pos.ndim != 2 || pos.shape[1] != dim))
    fail(ErrorCode::Shape, op, ": expected ", pos.name, " of shape [numPositions, ", dim, "] but received ", pos.shape_str());
  if (ids.ndim + 1 > kMaxDims)
    fail(ErrorCode::Shape, op, ": ids has ", ids.ndim, " dims, at most ", kMaxDims - 1, " are supported");
  int64_t want[kMaxDims];
  for (int d = 0; d < ids.ndim; ++d) want[d] = ids.shape[d];
  want[ids.ndim] = dim;
  check_shape(op, grad, want, ids.ndim + 1);
}

// Reads the scalar options at argument i.. (posOffset, scale, paddingIdx, dropout, seed, offset)
// into a, after the tensor fields are set; checks the position range.
static void scalar_args(const Napi::CallbackInfo& info, size_t i, const char* op, const TensorArg& pos, EmbeddingArgs& a) {
  a.pos_offset = int_arg(info, i, op, "positionOffset", 0, 9007199254740991.0);
  a.scale = float(number_arg(info, i + 1, op, "scale", -3.4e38, 3.4e38));
  a.padding_idx = int_arg(info, i + 2, op, "paddingIdx", -1, double(a.vocab) - 1);
  a.dropout = float(number_arg(info, i + 3, op, "dropout", 0, 1));
  a.seed = seed_arg(info, i + 4, op, "seed");
  a.offset = seed_arg(info, i + 5, op, "offset");
  if (pos.present) {
    a.num_positions = pos.shape[0];
    if (a.seq + a.pos_offset > a.num_positions)
      fail(ErrorCode::Shape, op, ": ", pos.name, " has ", a.num_positions, " rows but a sequence of ", a.seq,
           " tokens at positionOffset ", a.pos_offset, " needs ", a.seq + a.pos_offset);
  }
}

// embedding_fwd(ids, table, positions?, out, positionOffset, scale, paddingIdx, dropout, seed, offset, async)
static Napi::Value embedding_fwd_js(const Napi::CallbackInfo& info) {
  const char* op = "embedding";
  TensorArg ids = tensor_arg(info, 0, op, "ids"), table = tensor_arg(info, 1, op, "table"),
            pos = tensor_arg(info, 2, op, "positions", true), out = tensor_arg(info, 3, op, "out");
  check_common(op, ids, table, pos, out, "table");
  EmbeddingArgs a;
  a.device = table.device; a.dtype = table.dtype;
  a.tokens = ids.numel; a.seq = ids.cols(); a.vocab = table.shape[0]; a.dim = table.shape[1];
  scalar_args(info, 4, op, pos, a);
  bool async = bool_arg(info, 10, op, "async");
  a.table = table.data; a.positions = pos.data; a.out = out.data;
  const IndexSource ids_js = index_source(ids, a.tokens);
  return run_op(info, async, {&ids, &table, &pos, &out}, [a, ids_js]() mutable {
    const IndexArg checked = checked_ids("embedding", a, ids_js);
    a.ids = checked.data();
    embedding_fwd(a);
  });
}

// embedding_bwd(dout, ids, dtable, dpositions?, positionOffset, scale, paddingIdx, dropout, seed, offset, async)
// dtable and dpositions are accumulated into.
static Napi::Value embedding_bwd_js(const Napi::CallbackInfo& info) {
  const char* op = "embeddingBackward";
  TensorArg dout = tensor_arg(info, 0, op, "dOut"), ids = tensor_arg(info, 1, op, "ids"),
            dtable = tensor_arg(info, 2, op, "dtable"), dpos = tensor_arg(info, 3, op, "dpositions", true);
  check_common(op, ids, dtable, dpos, dout, "dtable");
  EmbeddingArgs a;
  a.device = dtable.device; a.dtype = dtable.dtype;
  a.tokens = ids.numel; a.seq = ids.cols(); a.vocab = dtable.shape[0]; a.dim = dtable.shape[1];
  scalar_args(info, 4, op, dpos, a);
  bool async = bool_arg(info, 10, op, "async");
  a.dout = dout.data; a.dtable = dtable.data; a.dpositions = dpos.data;
  const IndexSource ids_js = index_source(ids, a.tokens);
  return run_op(info, async, {&dout, &ids, &dtable, &dpos}, [a, ids_js]() mutable {
    const IndexArg checked = checked_ids("embeddingBackward", a, ids_js);
    a.ids = checked.data();
    embedding_bwd(a);
  });
}

void register_embedding(Napi::Object exports) {
  SF_EXPORT(exports, "embedding_fwd", embedding_fwd_js);
  SF_EXPORT(exports, "embedding_bwd", embedding_bwd_js);
}

}  // namespace seqfuse::napi
