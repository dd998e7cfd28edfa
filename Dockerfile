# Storefront API / CLI image. Build: docker build -t storefront .
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UV_LINK_MODE=copy
RUN pip install --no-cache-dir uv
WORKDIR /srv
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY app ./app
COPY containers.py alembic.ini ./
COPY alembic ./alembic
COPY config ./config
RUN uv sync --frozen --no-dev
ENV PATH=/srv/.venv/bin:$PATH STOREFRONT_ENV=production
USER nobody
EXPOSE 8000
CMD ["storefront", "serve", "--host", "0.0.0.0", "--port", "8000"]
