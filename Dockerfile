# syntax=docker/dockerfile:1
# One image for every Tenpo service and the gateway; the pod picks the module:
#   docker run IMAGE services.catalog            (serve)
#   docker run IMAGE services.catalog migrate    (apply migrations)
# Build: docker build -t tenpo .     (Kubernetes: deploy/README.md)

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: the locked runtime dependencies in /app/.venv -------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
# The uv that wrote uv.lock.
RUN pip install "uv==0.13.9"
WORKDIR /app
# Dependencies first, so this layer is rebuilt only when the lock changes.
COPY pyproject.toml uv.lock README.md ./
COPY libs/kit/pyproject.toml libs/kit/
COPY libs/protos/pyproject.toml libs/protos/
# The development tooling is a workspace member, so uv needs its pyproject to read the
# workspace; --no-dev leaves the package itself (and psutil, the embedded servers) out.
COPY tools/devtools/pyproject.toml tools/devtools/
RUN uv sync --frozen --no-dev --no-install-workspace
# Then Tenpo itself, installed editable: the workspace stays at /app in the final image.
COPY libs/kit libs/kit
COPY services services
RUN uv sync --frozen --no-dev

# --- protos: generated code; the generators never reach the final image ------------------
FROM build AS protos
# protogen (tools/devtools) needs grpcio-tools and mypy-protobuf: the versions uv.lock pins,
# installed into this stage's copy of the environment only. The rest of the development
# tooling (embedded servers, psutil) is not needed here, so the package is not installed:
# its source is put on the path for this one command.
RUN uv export --frozen --package tenpo-devtools --no-hashes --no-header --no-annotate \
        --no-emit-workspace \
    | grep -E '^(grpcio-tools|mypy-protobuf)==' > /tmp/protogen-requirements.txt \
    && uv pip install --python /app/.venv/bin/python -r /tmp/protogen-requirements.txt
COPY tools/devtools/tenpo/devtools /tmp/devtools/tenpo/devtools
COPY protos protos
RUN PYTHONPATH=/tmp/devtools /app/.venv/bin/python -m tenpo.devtools.protogen protos libs/protos

# --- runtime -----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 tenpo \
    && useradd --system --uid 10001 --gid tenpo --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin tenpo
WORKDIR /app
COPY --from=build /app /app
COPY --from=protos /app/libs/protos/tenpo libs/protos/tenpo
COPY --from=protos /app/libs/protos/tenpo_descriptors.binpb libs/protos/
# Bytecode at build time: the root filesystem is read-only at run time.
RUN python -m compileall -q services libs
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
# gateway HTTP and gRPC ingress; services 50051-50056
EXPOSE 8080 50050 50051 50052 50053 50054 50055 50056
ENTRYPOINT ["python", "-m"]
CMD ["services.gateway"]
