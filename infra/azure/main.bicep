// logrelay on Azure: the Log Analytics workspace (new or existing), the Keeper table, a `Direct`
// data collection rule with its own ingestion endpoint (or a DCE for private link), the
// Monitoring Metrics Publisher role for the sender, and optionally the Function App that runs
// the custom handler with a managed identity. Deploy into the workspace's resource group.
// The table and stream columns are `logrelay schema`'s (shared/src/schema.rs); main.json is the
// same template in ARM JSON, kept equal by scripts/lint-infra.sh.

targetScope = 'resourceGroup'

@description('Region for every resource created.')
param location string = resourceGroup().location

@description('Log Analytics workspace to create, or the existing one (in this resource group) when useExistingWorkspace is true.')
@minLength(4)
@maxLength(63)
param workspaceName string = 'logrelay-workspace'

@description('Use the existing workspace named workspaceName (for example the Sentinel workspace) instead of creating one.')
param useExistingWorkspace bool = false

@description('Custom table the events land in; must end _CL.')
param tableName string = 'KeeperAuditEvents_CL'

@description('DCR input stream logrelay posts to; must begin Custom-.')
param streamName string = 'Custom-KeeperAuditEvents'

@description('Interactive retention of the table, in days.')
@minValue(4)
@maxValue(730)
param retentionInDays int = 90

@description('Name of the data collection rule.')
param dcrName string = 'logrelay-keeper-dcr'

@description('Also create a data collection endpoint and send through it (needed for private link). Otherwise the DCR\'s own endpoint is used.')
param createDce bool = false

@description('Name of the data collection endpoint, when createDce is true.')
param dceName string = 'logrelay-keeper-dce'

@description('Object ID of the principal that sends (the app registration\'s service principal: `az ad sp show --id <client-id> --query id`). Empty: no role assignment.')
param principalId string = ''

@description('Type of principalId.')
@allowed([
  'ServicePrincipal'
  'User'
  'Group'
])
param principalType string = 'ServicePrincipal'

@description('Also deploy the Function App that runs logrelay\'s Azure custom handler with a managed identity.')
param deployFunctionApp bool = false

@description('Name of the Function App (globally unique), when deployFunctionApp is true.')
param functionAppName string = 'logrelay-${uniqueString(resourceGroup().id)}'

@description('Bearer token callers of the Function App\'s /events route must send. Empty: the HTTP route refuses every request.')
@secure()
param httpToken string = ''

@description('Solution-compatible mode: send into the Keeper Security Sentinel solution\'s table KeeperSecurityEventNewLogs_CL (stream Custom-KeeperSecurityEventNewLogs, through logrelay\'s own DCR) with the event\'s time and EventId, instead of KeeperAuditEvents_CL. See infra/README.md.')
param keeperSolutionCompatible bool = false

@description('Deploy the Sentinel content (KeeperAuditEvents parser, ASIM parsers, analytic rules) to the workspace, which must have Microsoft Sentinel enabled. Thresholds: deploy sentinel.bicep on its own.')
param deploySentinelContent bool = false

// Monitoring Metrics Publisher: the role the Logs Ingestion API requires on the DCR.
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'
// Logs Ingestion API version (azure-monitor-protocol.md section 1.1).
var ingestionApiVersion = '2023-01-01'
// The DCR writes a custom table through the stream named Custom-<table>.
var outputStream = 'Custom-${tableName}'
var storageAccountName = take('logrelay${uniqueString(resourceGroup().id, functionAppName)}', 24)

// Columns, in order, exactly as `logrelay schema` prints them (tableColumns / streamDeclaration).
var tableColumns = [
  {
    name: 'TimeGenerated'
    type: 'dateTime'
    description: 'When the event happened (the event\'s own time, UTC).'
  }
  {
    name: 'EventId'
    type: 'string'
    description: 'Keeper\'s event id, or a stable hash of the event; deduplicate with arg_max by EventId.'
  }
  {
    name: 'audit_event'
    type: 'string'
    description: 'Event type, e.g. login.'
  }
  {
    name: 'category'
    type: 'string'
    description: 'Event category, e.g. usage.'
  }
  {
    name: 'remote_address'
    type: 'string'
    description: 'Client IP address.'
  }
  {
    name: 'client_version'
    type: 'string'
    description: 'Keeper client and version.'
  }
  {
    name: 'username'
    type: 'string'
    description: 'Acting user.'
  }
  {
    name: 'enterprise_id'
    type: 'long'
    description: 'Keeper enterprise id.'
  }
  {
    name: 'timestamp'
    type: 'dateTime'
    description: 'The event time as Keeper sent it; kept even when Azure replaces an old TimeGenerated.'
  }
  {
    name: 'data'
    type: 'dynamic'
    description: 'Every event-specific field (record_uid, to_username, ...).'
  }
]

var streamColumns = [
  {
    name: 'TimeGenerated'
    type: 'datetime'
  }
  {
    name: 'EventId'
    type: 'string'
  }
  {
    name: 'audit_event'
    type: 'string'
  }
  {
    name: 'category'
    type: 'string'
  }
  {
    name: 'remote_address'
    type: 'string'
  }
  {
    name: 'client_version'
    type: 'string'
  }
  {
    name: 'username'
    type: 'string'
  }
  {
    name: 'enterprise_id'
    type: 'long'
  }
  {
    name: 'timestamp'
    type: 'datetime'
  }
  {
    name: 'data'
    type: 'dynamic'
  }
]

resource createdWorkspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = if (!useExistingWorkspace) {
  name: workspaceName
  location: location
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
    features: {
      enableLogAccessUsingOnlyResourcePermissions: true
    }
  }
}

// The workspace either way: the one just created or the existing one.
resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource table 'Microsoft.OperationalInsights/workspaces/tables@2022-10-01' = {
  parent: workspace
  name: tableName
  properties: {
    plan: 'Analytics'
    retentionInDays: retentionInDays
    schema: {
      name: tableName
      columns: tableColumns
    }
  }
  dependsOn: [
    createdWorkspace
  ]
}

resource dce 'Microsoft.Insights/dataCollectionEndpoints@2024-03-11' = if (createDce) {
  name: dceName
  location: location
  properties: {
    networkAcls: {
      publicNetworkAccess: 'Enabled'
    }
  }
}

resource dcr 'Microsoft.Insights/dataCollectionRules@2024-03-11' = {
  name: dcrName
  location: location
  // Direct: the rule gets its own logs ingestion endpoint (azure-monitor-protocol.md section 1.1).
  kind: 'Direct'
  properties: {
    dataCollectionEndpointId: createDce ? dce.id : null
    streamDeclarations: {
      '${streamName}': {
        columns: streamColumns
      }
    }
    destinations: {
      logAnalytics: [
        {
          name: 'workspace'
          workspaceResourceId: workspace.id
        }
      ]
    }
    dataFlows: [
      {
        streams: [
          streamName
        ]
        destinations: [
          'workspace'
        ]
        transformKql: 'source'
        outputStream: outputStream
      }
    ]
  }
  dependsOn: [
    table
  ]
}

resource senderRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(dcr.id, principalId, monitoringMetricsPublisherRoleId)
  scope: dcr
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: principalId
    principalType: principalType
  }
}

var ingestionBase = createDce ? dce!.properties.logsIngestion.endpoint : dcr.properties.endpoints.logsIngestion
var logsIngestionEndpoint = '${ingestionBase}/dataCollectionRules/${dcr.properties.immutableId}/streams/${streamName}?api-version=${ingestionApiVersion}'

// Where senders post: logrelay's table, or in solution-compatible mode the solution's.
var senderEndpoint = keeperSolutionCompatible ? keeperSolution!.outputs.logsIngestionEndpoint : logsIngestionEndpoint

// Solution-compatible mode (keeper-solution.bicep): the solution's table plus EventId, and a DCR of
// logrelay's own for the solution's stream name; the solution's own DCR is left alone.
module keeperSolution 'keeper-solution.bicep' = if (keeperSolutionCompatible) {
  name: 'logrelay-keeper-solution'
  params: {
    location: location
    workspaceName: workspaceName
    dcrName: '${dcrName}-solution'
    dataCollectionEndpointId: createDce ? dce.id : ''
    principalId: principalId
    principalType: principalType
    retentionInDays: retentionInDays
  }
  dependsOn: [
    createdWorkspace
  ]
}

// Sentinel content (sentinel.bicep, written by scripts/kql/build.js from infra/azure/sentinel/).
module sentinelContent 'sentinel.bicep' = if (deploySentinelContent) {
  name: 'logrelay-sentinel-content'
  params: {
    workspaceName: workspaceName
  }
  dependsOn: [
    table
    keeperSolution
  ]
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = if (deployFunctionApp) {
  // checkov:skip=CKV_AZURE_35: A Consumption-plan Function App cannot reach a storage account that denies public network access (that needs VNet integration, a Premium plan).
  // checkov:skip=CKV_AZURE_206: Function runtime storage; LRS exists in every region, ZRS/GRS do not. Events are delivered or dead-lettered within minutes, not stored here.
  // checkov:skip=CKV_AZURE_43: The name is an expression (take(..., 24) of a lowercase uniqueString), which checkov cannot evaluate; it is valid.
  // checkov:skip=CKV_AZURE_44: False positive, checkov reads no properties of a conditional (= if) Bicep resource; verified on main.json by lint-infra.
  name: storageAccountName
  location: location
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: true
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = if (deployFunctionApp) {
  parent: storage
  name: 'default'
}

// Keeper files dropped here are forwarded by the blob-events function.
resource eventsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = if (deployFunctionApp) {
  parent: blobService
  name: 'keeper-events'
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = if (deployFunctionApp) {
  parent: storage
  name: 'default'
}

// Keeper event messages put here are forwarded by the queue-events function.
resource eventsQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = if (deployFunctionApp) {
  parent: queueService
  name: 'keeper-events'
}

resource plan 'Microsoft.Web/serverfarms@2023-12-01' = if (deployFunctionApp) {
  // checkov:skip=CKV_AZURE_225: The Consumption (Y1) plan has no zone redundancy option.
  name: '${functionAppName}-plan'
  location: location
  kind: 'linux'
  sku: {
    name: 'Y1'
    tier: 'Dynamic'
  }
  properties: {
    reserved: true
  }
}

var storageConnection = deployFunctionApp ? 'DefaultEndpointsProtocol=https;AccountName=${storage.name};EndpointSuffix=${environment().suffixes.storage};AccountKey=${storage.listKeys().keys[0].value}' : ''

resource functionApp 'Microsoft.Web/sites@2023-12-01' = if (deployFunctionApp) {
  // checkov:skip=CKV_AZURE_222: The /events HTTP route must be reachable by Keeper and webhooks on the internet; it requires a bearer token.
  // checkov:skip=CKV_AZURE_17: Callers authenticate with a bearer token; Keeper and webhooks cannot present client certificates.
  // checkov:skip=CKV_AZURE_212: The Consumption plan scales instances on demand; a minimum instance count needs a Premium plan.
  // checkov:skip=CKV_AZURE_213: The Consumption plan host restarts unhealthy workers itself; the custom handler has no separate health route.
  name: functionAppName
  location: location
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    // checkov:skip=CKV_AZURE_67: False positive, checkov reads no properties of a conditional (= if) Bicep resource; verified on main.json by lint-infra.
    // checkov:skip=CKV_AZURE_15: False positive, checkov reads no properties of a conditional (= if) Bicep resource; verified on main.json by lint-infra.
    // checkov:skip=CKV_AZURE_78: False positive, checkov reads no properties of a conditional (= if) Bicep resource; verified on main.json by lint-infra.
    // checkov:skip=CKV_AZURE_14: False positive, checkov reads no properties of a conditional (= if) Bicep resource; verified on main.json by lint-infra.
    // checkov:skip=CKV_AZURE_18: False positive, checkov reads no properties of a conditional (= if) Bicep resource; verified on main.json by lint-infra.
    // checkov:skip=CKV_AZURE_16: False positive, checkov reads no properties of a conditional (= if) Bicep resource; verified on main.json by lint-infra.
    // checkov:skip=CKV_AZURE_153: False positive, checkov reads no properties of a conditional (= if) Bicep resource; verified on main.json by lint-infra.
    // checkov:skip=CKV_AZURE_71: False positive, checkov reads no properties of a conditional (= if) Bicep resource; verified on main.json by lint-infra.
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        {
          name: 'AzureWebJobsStorage'
          value: storageConnection
        }
        {
          name: 'WEBSITE_CONTENTAZUREFILECONNECTIONSTRING'
          value: storageConnection
        }
        {
          name: 'WEBSITE_CONTENTSHARE'
          value: toLower(functionAppName)
        }
        {
          name: 'FUNCTIONS_EXTENSION_VERSION'
          value: '~4'
        }
        {
          name: 'FUNCTIONS_WORKER_RUNTIME'
          value: 'custom'
        }
        {
          name: 'LOGS_INGESTION_ENDPOINT'
          value: senderEndpoint
        }
        {
          name: 'AZURE_TENANT_ID'
          value: subscription().tenantId
        }
        {
          name: 'LOGRELAY_HTTP_TOKEN'
          value: httpToken
        }
        {
          name: 'RUST_LOG'
          value: 'info'
        }
        {
          // No Event Hub is created here; enable the function after setting its two app settings.
          name: 'AzureWebJobs.eventhub-events.Disabled'
          value: 'true'
        }
      ]
    }
  }
}

// The Function App's managed identity sends to the DCR too.
resource functionRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (deployFunctionApp) {
  name: guid(dcr.id, functionAppName, monitoringMetricsPublisherRoleId)
  scope: dcr
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: functionApp!.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// In solution-compatible mode the Function App's managed identity sends to that DCR.
module keeperSolutionFunctionRole 'keeper-solution-role.bicep' = if (keeperSolutionCompatible && deployFunctionApp) {
  name: 'logrelay-keeper-solution-function-role'
  params: {
    dcrName: '${dcrName}-solution'
    principalId: functionApp!.identity.principalId
    assignmentSeed: functionAppName
  }
  dependsOn: [
    keeperSolution
  ]
}

@description('The Endpoint URL for LOGS_INGESTION_ENDPOINT and the Keeper Admin Console.')
output logsIngestionEndpoint string = senderEndpoint

@description('The DCR\'s immutable id (dcr-...).')
output dcrImmutableId string = dcr.properties.immutableId

@description('Resource id of the workspace the table is in.')
output workspaceId string = workspace.id

@description('Workspace (customer) id, for queries from the CLI.')
output workspaceCustomerId string = workspace.properties.customerId

@description('Name of the Function App, when deployed.')
output functionAppName string = deployFunctionApp ? functionAppName : ''
