# Sourced by every script of pbs-scripts/: the environment Dragon needs on Polaris compute nodes.
# Run from the repository root, with the environment of install.sh in .venv/ (docs/polaris.md: the install).
if command -v module >/dev/null 2>&1; then
    module use /soft/modulefiles 2>/dev/null || true
    module load conda 2>/dev/null || true         # the Python (and CUDA torch) .venv/ was made from
    module unload xalt 2>/dev/null || true        # xalt's LD_PRELOAD breaks Dragon's launcher
fi
export PATH="/opt/pbs/bin:$PWD/.venv/bin:$PATH"   # Dragon detects PBS through qstat; dragon and dragon-config live in .venv/bin
# HSTA, Dragon's transport agent, over Slingshot: point it at Cray's libfabric (the OFI backend). The
# setting is stored in the environment's Dragon configuration; setting it again is harmless.
OFI_LIB_DIR=${OFI_LIB_DIR:-/opt/cray/libfabric/1.22.0/lib64}
if [ -e "$OFI_LIB_DIR/libfabric.so" ]; then
    dragon-config add --ofi-runtime-lib="$OFI_LIB_DIR"
fi
