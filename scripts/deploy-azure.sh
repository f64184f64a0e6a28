#!/usr/bin/env bash
# Deploys infra/azure/main.bicep into a resource group and prints the Endpoint URL. Never run by tests.
#   RESOURCE_GROUP (required), LOCATION (for a new group), WORKSPACE_NAME, USE_EXISTING_WORKSPACE
#   (true/false), PRINCIPAL_ID (service principal object id of the app registration),
#   CREATE_DCE (true/false), DEPLOY_FUNCTION_APP (true/false), LOGRELAY_HTTP_TOKEN.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if ! command -v az >/dev/null; then
  cat >&2 <<'HELP'
deploy-azure: 'az' (Azure CLI) not found. Install it:
  https://learn.microsoft.com/cli/azure/install-azure-cli   (Debian/Ubuntu: curl -sL https://aka.ms/InstallAzureCLIDeb | sudo bash)
then `az login` and `az account set --subscription <id>`. The CLI compiles Bicep itself.
HELP
  exit 1
fi
: "${RESOURCE_GROUP:?set RESOURCE_GROUP (the resource group of the workspace)}"

if [ -n "${LOCATION:-}" ]; then
  az group create --name "$RESOURCE_GROUP" --location "$LOCATION" --output none
fi

params=(
  "workspaceName=${WORKSPACE_NAME:-logrelay-workspace}"
  "useExistingWorkspace=${USE_EXISTING_WORKSPACE:-false}"
  "principalId=${PRINCIPAL_ID:-}"
  "createDce=${CREATE_DCE:-false}"
  "deployFunctionApp=${DEPLOY_FUNCTION_APP:-false}"
)
if [ -n "${LOGRELAY_HTTP_TOKEN:-}" ]; then params+=("httpToken=$LOGRELAY_HTTP_TOKEN"); fi

az deployment group create \
  --resource-group "$RESOURCE_GROUP" \
  --name logrelay \
  --template-file infra/azure/main.bicep \
  --parameters "${params[@]}" \
  --output none

endpoint="$(az deployment group show --resource-group "$RESOURCE_GROUP" --name logrelay \
  --query properties.outputs.logsIngestionEndpoint.value --output tsv)"
echo "LOGS_INGESTION_ENDPOINT=$endpoint"
