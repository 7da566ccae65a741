import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))


def _shift_random_streams(shift: int) -> None:
    """Every seed the tests (and the code they call) set, moved by ``shift``: a stand-in for a CPU whose
    random stream differs. A test whose verdict hangs on one draw fails under it; CI runs the suite this
    way too (.ci/run), so a fixture that only works for one draw is caught before a user sees it."""
    import torch

    manual_seed = torch.manual_seed

    class ShiftedGenerator(torch.Generator):
        def manual_seed(self, seed):  # type: ignore[override]
            return super().manual_seed(int(seed) + shift)

    torch.manual_seed = lambda seed: manual_seed(int(seed) + shift)
    torch.Generator = ShiftedGenerator


if int(os.environ.get("LANGNEURONS_TEST_SEED_SHIFT", "0") or 0):
    _shift_random_streams(int(os.environ["LANGNEURONS_TEST_SEED_SHIFT"]))
