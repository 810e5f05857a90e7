"""No network, ever: every library we load is told to stay offline and send no telemetry.

Set at import of the package, before transformers / datasets / huggingface_hub are imported, and
inherited by every process we start. A user who has put models in the local Hugging Face cache can
still load them; nothing is ever downloaded.
"""

import os

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "DO_NOT_TRACK": "1",
    "DISABLE_TELEMETRY": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_DO_NOT_TRACK": "1",
    "UNSLOTH_DISABLE_STATISTICS": "1",
    "WANDB_MODE": "disabled",
    "GRADIO_ANALYTICS_ENABLED": "False",
}


def enforce() -> None:
    """Force offline mode; these are not defaults a user's shell can switch back on."""
    os.environ.update(OFFLINE_ENV)
