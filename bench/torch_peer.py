# Shared by the PyTorch peers of the bench (attention_torch.py, layers_torch.py).


def blas():
    """The BLAS library this process has loaded (PyTorch's matmuls go through it)."""
    with open('/proc/self/maps') as f:
        maps = f.read()
    for name in ('openblas', 'blis', 'mkl'):
        if name in maps:
            return name
    return 'reference' if 'libblas' in maps else 'unknown'
