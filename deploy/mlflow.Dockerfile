# mlflow server with the server extra's PostgreSQL driver and S3 client (versions as in
# requirements.txt and requirements-server.txt).
FROM ghcr.io/mlflow/mlflow:v3.17.2
RUN pip install --no-cache-dir psycopg2-binary==2.9.13 boto3==1.44.5
