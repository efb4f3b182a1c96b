#!/bin/sh
# Entrypoint of the sedsweep MLflow image (docker/Dockerfile.cpu), shared by docker/compose.yaml
# and docker/kuberay/mlflow.yaml. Configuration comes only from the environment:
#
#   MLFLOW_BACKEND_STORE_URI   used as is when set; otherwise built from POSTGRES_USER,
#                              POSTGRES_PASSWORD (URL-encoded here), POSTGRES_HOST (postgres),
#                              POSTGRES_PORT (5432), POSTGRES_DB (mlflow). `mlflow server` reads
#                              it as --backend-store-uri.
#   MLFLOW_AUTH_ADMIN_USERNAME / MLFLOW_AUTH_ADMIN_PASSWORD
#                              the basic-auth admin, created on first start (read by MLflow
#                              itself; the password is never written to a file)
#   MLFLOW_FLASK_SERVER_SECRET_KEY   CSRF key, the same for every server worker
#   MLFLOW_AUTH_DATABASE_URI   user store of the basic-auth app (default: the backend store;
#                              its tables and alembic_version_auth do not clash with MLflow's)
#   MLFLOW_AUTH_DEFAULT_PERMISSION   READ (default), EDIT, MANAGE or NO_PERMISSIONS
#   MLFLOW_AUTH_CONFIG_PATH    where the generated auth config goes (default /tmp/mlflow-auth/basic_auth.ini)
#
# Then it runs its arguments (default: `mlflow server ...`, see the Dockerfile's CMD).
set -eu

if [ -z "${MLFLOW_BACKEND_STORE_URI:-}" ]; then
    : "${POSTGRES_USER:?is required (or set MLFLOW_BACKEND_STORE_URI)}"
    : "${POSTGRES_PASSWORD:?is required (or set MLFLOW_BACKEND_STORE_URI)}"
    user=$(python -c 'import os, urllib.parse as u; print(u.quote(os.environ["POSTGRES_USER"], safe=""))')
    password=$(python -c 'import os, urllib.parse as u; print(u.quote(os.environ["POSTGRES_PASSWORD"], safe=""))')
    MLFLOW_BACKEND_STORE_URI="postgresql+psycopg://${user}:${password}@${POSTGRES_HOST:-postgres}:${POSTGRES_PORT:-5432}/${POSTGRES_DB:-mlflow}"
    export MLFLOW_BACKEND_STORE_URI
fi

if [ "${1:-}" = "mlflow" ] && [ "${2:-}" = "server" ]; then
    : "${MLFLOW_AUTH_ADMIN_USERNAME:?is required: the basic-auth admin user}"
    : "${MLFLOW_AUTH_ADMIN_PASSWORD:?is required: the basic-auth admin password}"
    : "${MLFLOW_FLASK_SERVER_SECRET_KEY:?is required: a random CSRF key shared by all server workers}"
    MLFLOW_AUTH_CONFIG_PATH=${MLFLOW_AUTH_CONFIG_PATH:-/tmp/mlflow-auth/basic_auth.ini}
    export MLFLOW_AUTH_CONFIG_PATH
    umask 077
    mkdir -p "$(dirname "$MLFLOW_AUTH_CONFIG_PATH")"
    # configparser interpolates '%': URL-encoded credentials need it doubled.
    auth_db=$(printf '%s' "${MLFLOW_AUTH_DATABASE_URI:-$MLFLOW_BACKEND_STORE_URI}" | sed 's/%/%%/g')
    cat >"$MLFLOW_AUTH_CONFIG_PATH" <<EOF
[mlflow]
default_permission = ${MLFLOW_AUTH_DEFAULT_PERMISSION:-READ}
database_uri = ${auth_db}
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
EOF
fi

exec "$@"
