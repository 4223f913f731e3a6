# Sourced by the other scripts: the environment cargo needs to build lgss.
# shellcheck shell=bash
LGSS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export LGSS_ROOT
export VIRTUAL_ENV="$LGSS_ROOT/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
# torch-sys takes libtorch from the venv's PyTorch when this is set; its value
# (the venv's path) only makes cargo rebuild torch-sys when the checkout moves,
# so a shared target dir never links against another checkout's libtorch.
export LIBTORCH_USE_PYTORCH="$VIRTUAL_ENV"
