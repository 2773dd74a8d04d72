# The sweep worker image: `sweeps` with CUDA-enabled torch, for docker-compose.yml.
#
#     docker build -t momentum-sweeps .                      # CUDA 12.6 wheels of torch
#     docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu -t momentum-sweeps .
#
# One image serves every service: `sweeps worker` (one per GPU), `sweeps run`, and
# optuna-dashboard on the same database.
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu126
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# torch first, from its own index, in its own layer: it is by far the biggest and changes least.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"

COPY pyproject.toml README.md ./
COPY momentum_convert ./momentum_convert
COPY storage ./storage
COPY sweeps ./sweeps
RUN pip install . optuna-dashboard

# Sweep specs: the examples ship in the image; mount your own at /app/specs.
COPY examples ./examples
RUN useradd --create-home sweeps && mkdir -p /app/specs && chown sweeps /app/specs
USER sweeps

ENTRYPOINT []
CMD ["sweeps", "--help"]
