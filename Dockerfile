FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY b24notify ./b24notify
# constraints.txt: the exact versions the tests ran with (make constraints regenerates it).
# No extras: the devtools extra (simulator, demo, SMTP sink) is for `make run` and the tests only;
# serve and worker import none of it (tests/test_import_contracts.py).
RUN pip install -c constraints.txt . && useradd --system --uid 10001 b24notify
USER b24notify
EXPOSE 8000
# The same image runs the web process (default) and the workers (`b24notify worker`).
CMD ["b24notify", "serve", "--host", "0.0.0.0", "--port", "8000"]
