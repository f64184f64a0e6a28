// Solution-compatible mode: Monitoring Metrics Publisher for one more sender (the Function App's
// managed identity) on the solution-compatible DCR. A module of its own because the Function App
// needs keeper-solution.bicep's endpoint first, so that module cannot take the app's identity.
// keeper-solution-role.json is this module in ARM JSON, written by scripts/kql/build.js.

targetScope = 'resourceGroup'

@description('Name of the solution-compatible data collection rule (keeper-solution.bicep).')
param dcrName string

@description('Object ID of the service principal that sends.')
param principalId string

@description('A name that makes the role assignment\'s id unique for this principal.')
param assignmentSeed string

// Monitoring Metrics Publisher: the role the Logs Ingestion API requires on the DCR.
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'

resource dcr 'Microsoft.Insights/dataCollectionRules@2024-03-11' existing = {
  name: dcrName
}

resource senderRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(dcr.id, assignmentSeed, monitoringMetricsPublisherRoleId)
  scope: dcr
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
