"""unlearn-peft: LLM unlearning as LoRA / QLoRA adapters for the Hugging Face stack."""

from .quiet import hold_back_import_messages

hold_back_import_messages()  # before PEFT imports bitsandbytes

from .config import UnlearnConfig  # noqa: E402
from .modeling import ULDModel  # noqa: E402
from .sidecar import SIDECAR_NAME, UnlearnSidecar  # noqa: E402
from .trainer import UnlearnTrainer  # noqa: E402
from .version import __version__  # noqa: E402

__all__ = ["SIDECAR_NAME", "ULDModel", "UnlearnConfig", "UnlearnSidecar", "UnlearnTrainer", "__version__"]
