# Image of the lockerfleet controller (and the agent/simulator), pinned to requirements.lock.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml requirements.lock README.md ./
COPY schemas ./schemas
COPY controller ./controller
COPY node_agent ./node_agent
RUN pip install --no-cache-dir -c requirements.lock . && mkdir /data && chown nobody /data
USER nobody
ENTRYPOINT ["lockerfleet"]
CMD ["controller"]
