"""Thread counts set on purpose: Neo4j shares this machine's cores with Python."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def torch_threads(n: int):
    """torch's intra-op threads set to ``n`` inside the block, restored after."""
    import torch  # only the stages that train need torch; the CLI and the API start without it

    if n < 1:
        raise ValueError(f"torch_threads must be >= 1, got {n}; set --torch-threads or GRAPHRECALL_TORCH_THREADS")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
