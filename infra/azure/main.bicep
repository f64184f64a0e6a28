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

@description('Largest number of instances the Flex Consumption plan may scale the Function App out to (Flex allows 40 to 1000).')
@minValue(40)
@maxValue(1000)
param functionAppMaximumInstanceCount int = 40

@description('Memory of each Function App instance in MB (the Flex Consumption sizes), shared by the Functions host and the handler; the relay peaked near 42 MiB on a 1 GB export (BENCHMARKS.md).')
@allowed([
  512
  2048
  4096
])
param functionAppInstanceMemoryMB int = 512

@description('Create the Event Grid subscription that delivers BlobCreated events from container keeper-events to the blob_events function. Set true on a second deployment, after the code is deployed: the webhook needs the blobs_extension key, which exists once the host runs the function.')
param blobEventSubscription bool = false

@description('Event Hubs namespace (in this resource group) whose hub eventhub_events reads. Empty, or eventHubName empty: eventhub_events is disabled.')
param eventHubNamespace string = ''

@description('Event hub eventhub_events reads, in eventHubNamespace.')
param eventHubName string = ''

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
// Blob container the Flex Consumption plan runs the deployed package from.
var deploymentContainerName = 'deployment-package'
// Built-in roles the Function App's identity needs on its storage account (Microsoft Learn,
// "Connecting to host storage with an identity": blob trigger, all three; queue trigger, Queue Data Contributor).
var storageBlobDataOwnerRoleId = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageQueueDataContributorRoleId = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageAccountContributorRoleId = '17d1049b-9a84-46fb-8f53-869881c3d3ab'
// Azure Event Hubs Data Receiver: what an Event Hubs trigger needs with an identity (Microsoft Learn,
// "Azure Event Hubs trigger for Azure Functions", identity-based connections).
var eventHubsDataReceiverRoleId = 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'
var eventHubConfigured = !empty(eventHubNamespace) && !empty(eventHubName)
// Placeholder for the settings eventhub_events' function.json references while it is disabled:
// the host resolves %SETTING% names while indexing even a disabled function.
var notConfigured = 'not-configured'

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
  // checkov:skip=CKV_AZURE_35: Without VNet integration (not set up here) the Function App reaches its storage over the public endpoint; shared keys are off, so only Entra identities with a data role get in.
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
    // Flex Consumption reaches host storage and the deployment container with the managed identity.
    allowSharedKeyAccess: false
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

// Keeper files dropped here are forwarded by the blob_events function (Event Grid source).
resource eventsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = if (deployFunctionApp) {
  parent: blobService
  name: 'keeper-events'
  properties: {
    publicAccess: 'None'
  }
}

// The package `make package-azure` builds is deployed here; Flex Consumption runs from it.
resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = if (deployFunctionApp) {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = if (deployFunctionApp) {
  parent: storage
  name: 'default'
}

// Keeper event messages put here are forwarded by the queue_events function.
resource eventsQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = if (deployFunctionApp) {
  parent: queueService
  name: 'keeper-events'
}

// Flex Consumption (FC1): Linux Consumption (Y1) is retired on 30 September 2028 (Microsoft Learn,
// "Azure Functions hosting options"); Flex runs the custom handler stack.
resource plan 'Microsoft.Web/serverfarms@2024-11-01' = if (deployFunctionApp) {
  // checkov:skip=CKV_AZURE_225: Zone redundancy on Flex Consumption needs at least two always-ready instances per function group, a standing cost; failed deliveries are retried and dead-lettered instead.
  name: '${functionAppName}-plan'
  location: location
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-11-01' = if (deployFunctionApp) {
  // checkov:skip=CKV_AZURE_222: The /events HTTP route must be reachable by Keeper and webhooks on the internet; it requires a bearer token.
  // checkov:skip=CKV_AZURE_17: Callers authenticate with a bearer token; Keeper and webhooks cannot present client certificates.
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero on demand; always-ready instances would be a standing cost.
  // checkov:skip=CKV_AZURE_213: The Functions host restarts unhealthy workers itself; the custom handler has no separate health route.
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
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: 'https://${storageAccountName}.blob.${environment().suffixes.storage}/${deploymentContainerName}'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: functionAppMaximumInstanceCount
        instanceMemoryMB: functionAppInstanceMemoryMB
      }
      runtime: {
        name: 'custom'
        version: '1.0'
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      // Flex Consumption takes runtime and deployment from functionAppConfig; FUNCTIONS_WORKER_RUNTIME,
      // FUNCTIONS_EXTENSION_VERSION and WEBSITE_CONTENT* are among its deprecated settings (Microsoft
      // Learn, "App settings reference for Azure Functions", Flex Consumption plan deprecations).
      appSettings: [
        {
          // Host storage, blob_events and queue_events (connection AzureWebJobsStorage) use the identity.
          name: 'AzureWebJobsStorage__accountName'
          value: storageAccountName
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
          name: 'KEEPER_EVENT_HUB_NAME'
          value: eventHubConfigured ? eventHubName : notConfigured
        }
        {
          // Identity-based Event Hubs connection (Microsoft Learn, "Azure Event Hubs trigger for Azure Functions").
          name: 'KEEPER_EVENT_HUB_CONNECTION__fullyQualifiedNamespace'
          value: eventHubConfigured ? '${eventHubNamespace}.servicebus.windows.net' : '${notConfigured}.servicebus.windows.net'
        }
        {
          // Setting names allow letters, digits, periods and underscores only, hence the function's name.
          name: 'AzureWebJobs.eventhub_events.Disabled'
          value: eventHubConfigured ? 'false' : 'true'
        }
      ]
    }
  }
  dependsOn: [
    deploymentContainer
  ]
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

resource functionBlobRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (deployFunctionApp) {
  name: guid(storageAccountName, functionAppName, storageBlobDataOwnerRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRoleId)
    principalId: functionApp!.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource functionQueueRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (deployFunctionApp) {
  name: guid(storageAccountName, functionAppName, storageQueueDataContributorRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributorRoleId)
    principalId: functionApp!.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource functionStorageAccountRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (deployFunctionApp) {
  name: guid(storageAccountName, functionAppName, storageAccountContributorRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageAccountContributorRoleId)
    principalId: functionApp!.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// The hub eventhub_events reads, when one is named.
resource eventHubNamespaceResource 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: eventHubNamespace
}

resource eventHub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' existing = {
  parent: eventHubNamespaceResource
  name: eventHubName
}

resource functionEventHubRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (deployFunctionApp && eventHubConfigured) {
  name: guid(eventHubNamespace, eventHubName, functionAppName, eventHubsDataReceiverRoleId)
  scope: eventHub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventHubsDataReceiverRoleId)
    principalId: functionApp!.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// The blob extension's webhook for blob_events, with its blobs_extension system key.
var blobEventsWebhook = 'https://${functionApp!.properties.defaultHostName}/runtime/webhooks/blobs?functionName=Host.Functions.blob_events&code=${listKeys(resourceId('Microsoft.Web/sites/host', functionAppName, 'default'), '2024-11-01').systemKeys.blobs_extension}'

// Flex Consumption runs blob triggers only with the Event Grid source (Microsoft Learn, "Azure
// Functions Flex Consumption plan hosting", Considerations): the storage account's system topic...
resource blobEventsTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = if (deployFunctionApp) {
  name: '${storageAccountName}-events'
  location: location
  properties: {
    source: storage.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

// ...and its subscription to the blob extension's webhook for blob_events (Microsoft Learn,
// "Tutorial: Trigger Azure Functions on blob containers using an event subscription").
resource blobEventsSubscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (deployFunctionApp && blobEventSubscription) {
  parent: blobEventsTopic
  name: 'blob-events'
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        // ARM evaluates list functions even in a resource it does not deploy (Microsoft Learn,
        // "Conditional deployment in ARM templates"), and the key is missing until the code runs.
        endpointUrl: blobEventSubscription ? blobEventsWebhook : ''
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      subjectBeginsWith: '/blobServices/default/containers/keeper-events/'
    }
    eventDeliverySchema: 'EventGridSchema'
  }
  dependsOn: [
    eventsContainer
  ]
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
