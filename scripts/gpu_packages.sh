#!/usr/bin/env bash
# Build the packages that jaxdqn needs on a GPU machine that has JAX, Flax and optax but no EnvPool and no package
# index, as one archive small enough to travel (about 11 MB): the wheels, downloaded here for that machine's
# Python, unpacked into one site folder, EnvPool pruned to its Atari, classic-control and Box2D binaries (the
# other families' folders removed and their imports dropped from envpool/entry.py) and envpool_assets to its
# Atari ROMs (EnvPool's wheel and assets are 115 MB whole). scripts/gpu_run.sh unpacks it there.
#
# Usage: scripts/gpu_packages.sh [PYTHON_VERSION (default 312)] [ARCHIVE (default .gpu/site<version>.tgz)]
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-312}
archive=${2:-.gpu/site$version.tgz}
work=$(mktemp -d)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "${version:0:1}.${version:1}" \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$work/wheels" envpool==1.2.5 envpool-assets==0.3.0 gymnasium==1.3.0 Farama-Notifications==0.0.6 \
  dm-env==1.6 dm-tree==0.1.10 optree==0.20.0 tyro==1.0.17 docstring_parser==0.18.0 typeguard==4.6.1 \
  tensorboardX==2.6.5 gymnax==1.0.1
for wheel in "$work"/wheels/*.whl; do unzip -q -o "$wheel" -d "$work/site"; done
for family in mujoco vizdoom gfootball procgen jumanji minigrid pgx highway toy_text; do
  rm -rf "$work/site/envpool/$family"
  sed -i "/^import envpool\.$family\./d" "$work/site/envpool/entry.py"
done
for family in mujoco procgen vizdoom gfootball; do rm -rf "$work/site/envpool_assets/$family"; done
mkdir -p "$(dirname "$archive")"
tar -czf "$archive" -C "$work/site" .
rm -rf "$work"
ls -l "$archive"
