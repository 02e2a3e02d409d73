# densepose-torch's HTTP service (`densepose serve`), CPU build by default:
#   docker build -t densepose-torch .
#   docker run --rm -p 127.0.0.1:8081:8081 -v "$PWD/data:/data" -v densepose-models:/models densepose-torch --model R_50_FPN_s1x
# CUDA build: PyTorch's CUDA wheels carry their own CUDA runtime, so the base image stays the
# same; the host needs the NVIDIA driver and container toolkit, and the container `--gpus all`:
#   docker build -t densepose-torch:cuda --build-arg TORCH_VARIANT=cu124 .
#   docker run --rm --gpus all -p 127.0.0.1:8081:8081 densepose-torch:cuda --model R_50_FPN_s1x --device cuda
# Arguments after the image name go to `densepose serve` (see `densepose serve --help`).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
# cpu, or the CUDA build of PyTorch's wheel index to use (cu118, cu121, cu124, ...).
ARG TORCH_VARIANT=cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DENSEPOSE_TORCH_CACHE=/models
# torch first, from its own index: the default one would bring the multi-GB CUDA build to a CPU image.
RUN pip install torch --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}"
COPY --from=wheel /wheels /wheels
RUN pip install "$(ls /wheels/*.whl)[serve]" && rm -rf /wheels

# Not root. /data is the only folder POST /densepose reads and writes; /models keeps downloaded weights.
RUN useradd --create-home --uid 10001 densepose && mkdir -p /data /models && chown densepose:densepose /data /models
USER densepose
WORKDIR /data
VOLUME ["/models"]
EXPOSE 8081
# Healthy once the model is loaded (a zoo model downloads on first start: give it time).
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8081/readyz', timeout=4)"]
# 0.0.0.0 inside the container, so that a published port reaches it; publish it on 127.0.0.1
# (as compose.yaml does) unless a reverse proxy with authentication stands in front.
ENTRYPOINT ["densepose", "serve", "--host", "0.0.0.0", "--port", "8081", "--data-root", "/data"]
CMD []
