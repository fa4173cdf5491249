# Image of the lockerfleet controller, pinned to requirements.lock; lockers install the agent extra instead.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml requirements.lock README.md ./
COPY schemas ./schemas
COPY controller ./controller
COPY node_agent ./node_agent
RUN pip install --no-cache-dir -c requirements.lock '.[controller,postgres]' && mkdir /data && chown nobody /data
USER nobody
ENTRYPOINT ["lockerfleet"]
CMD ["controller"]
