// Solution-compatible mode: logrelay's events in the Keeper Security solution's table.
// The Microsoft Sentinel "Keeper Security" solution (Azure/Azure-Sentinel, Solutions/Keeper
// Security, 3.0.x) defines table KeeperSecurityEventNewLogs_CL and a DCR whose stream
// Custom-KeeperSecurityEventNewLogs takes Keeper's nine push columns and whose transform sets
// TimeGenerated = now(). This module adds a DCR of logrelay's own (the solution's DCR is not
// touched) with the same stream name plus EventId, and a transform that renames the columns as
// the solution does but keeps the event's own time:
// - TimeGenerated = the event's time while Azure accepts it (no older than 2 days, no more than
//   1 day ahead: https://learn.microsoft.com/azure/azure-monitor/logs/log-standard-columns#timegenerated),
//   else the arrival time; Timestamp always carries the event's time.
// - Only operators and functions transformations support
//   (https://learn.microsoft.com/azure/azure-monitor/data-collection/data-collection-transformations-kql);
//   scripts/check-kql.sh holds the transform to that subset.
// The table definition is the solution's columns plus EventId, so deploying it before or after
// the solution keeps the solution's DCR, rules and workbook working (see infra/README.md).
// sentinel/keeper-solution-table.json holds the columns; keeper-solution.json is this module in
// ARM JSON, written by scripts/kql/build.js.

targetScope = 'resourceGroup'

@description('Region of the data collection rule.')
param location string = resourceGroup().location

@description('Existing Log Analytics workspace (in this resource group) that holds or gets KeeperSecurityEventNewLogs_CL.')
param workspaceName string

@description('Name of logrelay\'s solution-compatible data collection rule.')
param dcrName string = 'logrelay-keeper-solution-dcr'

@description('Resource id of a data collection endpoint to send through; empty: the DCR\'s own endpoint.')
param dataCollectionEndpointId string = ''

@description('Object ID of the principal that sends; empty: no role assignment.')
param principalId string = ''

@description('Type of principalId.')
@allowed([
  'ServicePrincipal'
  'User'
  'Group'
])
param principalType string = 'ServicePrincipal'

@description('Interactive retention of the table, in days.')
@minValue(4)
@maxValue(730)
param retentionInDays int = 90

var solution = loadJsonContent('sentinel/keeper-solution-table.json')
// Monitoring Metrics Publisher: the role the Logs Ingestion API requires on the DCR.
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'
// Logs Ingestion API version.
var ingestionApiVersion = '2023-01-01'

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource table 'Microsoft.OperationalInsights/workspaces/tables@2022-10-01' = {
  parent: workspace
  name: solution.table
  properties: {
    plan: 'Analytics'
    retentionInDays: retentionInDays
    schema: {
      name: solution.table
      columns: solution.tableColumns
    }
  }
}

resource dcr 'Microsoft.Insights/dataCollectionRules@2024-03-11' = {
  name: dcrName
  location: location
  kind: 'Direct'
  properties: {
    dataCollectionEndpointId: empty(dataCollectionEndpointId) ? null : dataCollectionEndpointId
    streamDeclarations: {
      '${solution.stream}': {
        columns: solution.streamColumns
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
          solution.stream
        ]
        destinations: [
          'workspace'
        ]
        transformKql: loadTextContent('sentinel/dcr/keeper-solution-transform.kql')
        outputStream: 'Custom-${solution.table}'
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

var ingestionBase = empty(dataCollectionEndpointId) ? dcr.properties.endpoints.logsIngestion : reference(dataCollectionEndpointId, '2024-03-11').logsIngestion.endpoint

@description('The Endpoint URL for LOGS_INGESTION_ENDPOINT (and for Keeper\'s Admin Console push) in solution-compatible mode.')
output logsIngestionEndpoint string = '${ingestionBase}/dataCollectionRules/${dcr.properties.immutableId}/streams/${solution.stream}?api-version=${ingestionApiVersion}'

@description('The solution-compatible DCR\'s immutable id (dcr-...).')
output dcrImmutableId string = dcr.properties.immutableId
