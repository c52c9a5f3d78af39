# syntax=docker/dockerfile:1
#
# One image for every Bookline service; the container's command picks the service:
#
#   docker build -t bookline:local .
#   docker run --rm bookline:local --help
#   docker run --rm -e BOOKLINE_DATABASE_URL=postgresql+asyncpg://... bookline:local migrate
#
# deploy/compose.yaml and deploy/k8s/ run it (see deploy/README.md). Settings come from BOOKLINE_*
# variables (src/bookline/config.py); the image sets only where things live and that services listen
# on every interface. No test dependency is installed.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: Bookline as a wheel, installed with its dependencies into a virtual environment ---
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/bookline \
 && /opt/bookline/bin/pip install --no-cache-dir --no-compile /wheels/bookline-*.whl \
 && /opt/bookline/bin/python -m compileall -q /opt/bookline/lib \
 && /opt/bookline/bin/pip uninstall --yes pip

# --- runtime: the virtual environment on a slim Python, run as an unprivileged user ---
FROM ${PYTHON_IMAGE}
# the data dir (SQLite files, mail) and the keys dir are the user's own (0700): volumes mounted
# there take this ownership
RUN groupadd --system --gid 10001 bookline \
 && useradd --system --uid 10001 --gid bookline --home-dir /var/lib/bookline --no-create-home \
    --shell /usr/sbin/nologin bookline \
 && install -d -o bookline -g bookline -m 0700 /var/lib/bookline /var/lib/bookline/mail /etc/bookline/keys
COPY --from=builder /opt/bookline /opt/bookline
ENV PATH=/opt/bookline/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BOOKLINE_HOST=0.0.0.0 \
    BOOKLINE_DATA_DIR=/var/lib/bookline \
    BOOKLINE_KEYS_DIR=/etc/bookline/keys
VOLUME ["/var/lib/bookline"]
# booking-service, availability-service, pricing-engine, confirmation-service, payment-gateway,
# notification-service (their default ports, src/bookline/config.py SERVICES)
EXPOSE 8000 8001 8002 8003 8004 8005
# numeric, so that Kubernetes' runAsNonRoot can check it (deploy/k8s runs the pods as 10001 too)
USER 10001:10001
WORKDIR /var/lib/bookline
STOPSIGNAL SIGTERM
# no HEALTHCHECK here: the port depends on the service the command names; deploy/compose.yaml and
# deploy/k8s/ probe each service's /healthz and /readyz
ENTRYPOINT ["bookline"]
CMD ["serve", "booking-service"]
