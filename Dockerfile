# Storefront API / CLI image. Build: docker build -t storefront .
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1
RUN pip install --no-cache-dir uv
WORKDIR /srv
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY app ./app
COPY containers.py alembic.ini ./
COPY alembic ./alembic
COPY config ./config
RUN uv sync --frozen --no-dev
# storefront_build_info{commit}: docker build --build-arg GIT_COMMIT=$(git rev-parse HEAD) .
ARG GIT_COMMIT=""
ENV PATH=/srv/.venv/bin:$PATH STOREFRONT_ENV=production GIT_COMMIT=$GIT_COMMIT
USER nobody
# 8000: the API; 9464: `storefront worker`'s /metrics (worker.metrics_port)
EXPOSE 8000 9464
CMD ["storefront", "serve", "--host", "0.0.0.0", "--port", "8000"]
