// logrelay Sentinel content for KeeperAuditEvents_CL (written by scripts/kql/build.js from
// infra/azure/sentinel/; edit the sources there): the KeeperAuditEvents parser function, the ASIM
// Authentication and Audit Event parsers, and the scheduled analytic rules. The workspace must
// have Microsoft Sentinel enabled. sentinel.json is the same template in ARM JSON.

targetScope = 'resourceGroup'

@description('Existing Log Analytics workspace (in this resource group) with Microsoft Sentinel enabled.')
param workspaceName string

@description('Create the analytic rules enabled.')
param rulesEnabled bool = true

@description('Failed Keeper logins from one address within the burst window that count as a burst.')
@minValue(2)
param failedLoginThreshold int = 5

@description('Length of the failed-login burst window, in minutes.')
@minValue(1)
@maxValue(60)
param failedLoginBurstMinutes int = 10

@description('How soon after the last failure a successful login from the same address raises the alert, in minutes.')
@minValue(1)
@maxValue(60)
param successAfterBurstMinutes int = 30

@description('How long after a master password or two-factor change a login from a new address raises the alert, in hours.')
@minValue(1)
@maxValue(24)
param loginAfterCredentialChangeHours int = 24

@description('How far back an address counts as already known for the account, in days (at most 14, the longest rule period).')
@minValue(2)
@maxValue(14)
param knownAddressLookbackDays int = 14

@description('High-risk BreachWatch records of one user within an hour that raise the alert.')
@minValue(1)
param breachWatchRecordThreshold int = 1

@description('E-mail domains of the organisation (lower case). A share to any other domain raises the alert; empty: only Keeper\'s *_outside_* share events do.')
param organisationDomains array = []

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource fnKeeperAuditEvents 'Microsoft.OperationalInsights/workspaces/savedSearches@2023-09-01' = {
  parent: workspace
  name: 'KeeperAuditEvents'
  properties: {
    category: 'Keeper Security'
    displayName: 'Keeper audit events (logrelay parser)'
    query: loadTextContent('sentinel/parsers/KeeperAuditEvents.kql')
    functionAlias: 'KeeperAuditEvents'
    version: 2
  }
}

resource fnvimAuthenticationKeeperSecurity 'Microsoft.OperationalInsights/workspaces/savedSearches@2023-09-01' = {
  parent: workspace
  name: 'vimAuthenticationKeeperSecurity'
  properties: {
    category: 'Keeper Security'
    displayName: 'ASIM Authentication parser for Keeper Security (filtering)'
    query: loadTextContent('sentinel/parsers/vimAuthenticationKeeperSecurity.kql')
    functionAlias: 'vimAuthenticationKeeperSecurity'
    functionParameters: 'starttime:datetime=datetime(null), endtime:datetime=datetime(null), username_has_any:dynamic=dynamic([]), targetappname_has_any:dynamic=dynamic([]), srcipaddr_has_any_prefix:dynamic=dynamic([]), srchostname_has_any:dynamic=dynamic([]), eventtype_in:dynamic=dynamic([]), eventresultdetails_in:dynamic=dynamic([]), eventresult:string=\'*\', disabled:bool=false'
    version: 2
  }
  dependsOn: [
    fnKeeperAuditEvents
  ]
}

resource fnASimAuthenticationKeeperSecurity 'Microsoft.OperationalInsights/workspaces/savedSearches@2023-09-01' = {
  parent: workspace
  name: 'ASimAuthenticationKeeperSecurity'
  properties: {
    category: 'Keeper Security'
    displayName: 'ASIM Authentication parser for Keeper Security'
    query: loadTextContent('sentinel/parsers/ASimAuthenticationKeeperSecurity.kql')
    functionAlias: 'ASimAuthenticationKeeperSecurity'
    functionParameters: 'disabled:bool=false'
    version: 2
  }
  dependsOn: [
    fnvimAuthenticationKeeperSecurity
  ]
}

resource fnvimAuditEventKeeperSecurity 'Microsoft.OperationalInsights/workspaces/savedSearches@2023-09-01' = {
  parent: workspace
  name: 'vimAuditEventKeeperSecurity'
  properties: {
    category: 'Keeper Security'
    displayName: 'ASIM Audit Event parser for Keeper Security (filtering)'
    query: loadTextContent('sentinel/parsers/vimAuditEventKeeperSecurity.kql')
    functionAlias: 'vimAuditEventKeeperSecurity'
    functionParameters: 'starttime:datetime=datetime(null), endtime:datetime=datetime(null), srcipaddr_has_any_prefix:dynamic=dynamic([]), eventtype_in:dynamic=dynamic([]), eventresult:string=\'*\', actorusername_has_any:dynamic=dynamic([]), operation_has_any:dynamic=dynamic([]), object_has_any:dynamic=dynamic([]), newvalue_has_any:dynamic=dynamic([]), disabled:bool=false'
    version: 2
  }
  dependsOn: [
    fnASimAuthenticationKeeperSecurity
  ]
}

resource fnASimAuditEventKeeperSecurity 'Microsoft.OperationalInsights/workspaces/savedSearches@2023-09-01' = {
  parent: workspace
  name: 'ASimAuditEventKeeperSecurity'
  properties: {
    category: 'Keeper Security'
    displayName: 'ASIM Audit Event parser for Keeper Security'
    query: loadTextContent('sentinel/parsers/ASimAuditEventKeeperSecurity.kql')
    functionAlias: 'ASimAuditEventKeeperSecurity'
    functionParameters: 'disabled:bool=false'
    version: 2
  }
  dependsOn: [
    fnvimAuditEventKeeperSecurity
  ]
}

resource failedLoginsThenSuccess 'Microsoft.SecurityInsights/alertRules@2024-09-01' = {
  scope: workspace
  name: '5f2b8c1e-3a4d-4e6f-9b7a-1c2d3e4f5a01'
  kind: 'Scheduled'
  properties: {
    displayName: 'Keeper: failed-login burst then a successful login from the same address'
    description: 'At least failedLoginThreshold failed Keeper logins from one address within failedLoginBurstMinutes, followed within successAfterBurstMinutes by a successful login from that address.'
    severity: 'High'
    enabled: rulesEnabled
    query: replace(replace(replace(loadTextContent('sentinel/rules/failed-logins-then-success.kql'), 'let failedLoginThreshold = 5;', 'let failedLoginThreshold = ${failedLoginThreshold};'), 'let burstWindow = 10m;', 'let burstWindow = ${failedLoginBurstMinutes}m;'), 'let successWithin = 30m;', 'let successWithin = ${successAfterBurstMinutes}m;')
    queryFrequency: 'PT1H'
    queryPeriod: 'PT2H'
    triggerOperator: 'GreaterThan'
    triggerThreshold: 0
    suppressionDuration: 'PT1H'
    suppressionEnabled: false
    tactics: [
      'CredentialAccess'
      'InitialAccess'
    ]
    techniques: [
      'T1110'
      'T1078'
    ]
    entityMappings: [
      {
        entityType: 'Account'
        fieldMappings: [
          {
            identifier: 'FullName'
            columnName: 'Username'
          }
        ]
      }
      {
        entityType: 'IP'
        fieldMappings: [
          {
            identifier: 'Address'
            columnName: 'RemoteAddress'
          }
        ]
      }
    ]
    customDetails: {
      FailedAttempts: 'FailedAttempts'
      FirstFailure: 'FirstFailure'
    }
    eventGroupingSettings: {
      aggregationKind: 'AlertPerResult'
    }
  }
  dependsOn: [
    fnKeeperAuditEvents
    fnvimAuthenticationKeeperSecurity
    fnASimAuthenticationKeeperSecurity
    fnvimAuditEventKeeperSecurity
    fnASimAuditEventKeeperSecurity
  ]
}

resource credentialChangeThenNewAddress 'Microsoft.SecurityInsights/alertRules@2024-09-01' = {
  scope: workspace
  name: '5f2b8c1e-3a4d-4e6f-9b7a-1c2d3e4f5a02'
  kind: 'Scheduled'
  properties: {
    displayName: 'Keeper: master password or 2FA changed, then a login from a new address'
    description: 'A Keeper account\'s master password, alternate master password, recovery or two-factor setting changed, and within loginAfterCredentialChangeHours the account logged in from an address it had not used in the previous knownAddressLookbackDays.'
    severity: 'High'
    enabled: rulesEnabled
    query: replace(replace(loadTextContent('sentinel/rules/credential-change-then-new-address.kql'), 'let loginWithin = 24h;', 'let loginWithin = ${loginAfterCredentialChangeHours}h;'), 'let knownAddressLookback = 14d;', 'let knownAddressLookback = ${knownAddressLookbackDays}d;')
    queryFrequency: 'PT1H'
    queryPeriod: 'P14D'
    triggerOperator: 'GreaterThan'
    triggerThreshold: 0
    suppressionDuration: 'PT1H'
    suppressionEnabled: false
    tactics: [
      'Persistence'
      'CredentialAccess'
      'DefenseEvasion'
      'InitialAccess'
    ]
    techniques: [
      'T1098'
      'T1556'
      'T1078'
    ]
    entityMappings: [
      {
        entityType: 'Account'
        fieldMappings: [
          {
            identifier: 'FullName'
            columnName: 'Username'
          }
        ]
      }
      {
        entityType: 'IP'
        fieldMappings: [
          {
            identifier: 'Address'
            columnName: 'RemoteAddress'
          }
        ]
      }
    ]
    customDetails: {
      ChangeEvent: 'ChangeEvent'
      ChangeAddress: 'ChangeAddress'
    }
    eventGroupingSettings: {
      aggregationKind: 'AlertPerResult'
    }
  }
  dependsOn: [
    fnKeeperAuditEvents
    fnvimAuthenticationKeeperSecurity
    fnASimAuthenticationKeeperSecurity
    fnvimAuditEventKeeperSecurity
    fnASimAuditEventKeeperSecurity
  ]
}

resource breachwatchHighRisk 'Microsoft.SecurityInsights/alertRules@2024-09-01' = {
  scope: workspace
  name: '5f2b8c1e-3a4d-4e6f-9b7a-1c2d3e4f5a03'
  kind: 'Scheduled'
  properties: {
    displayName: 'Keeper: BreachWatch high-risk records'
    description: 'BreachWatch marked at least breachWatchRecordThreshold of a user\'s records high risk (their passwords appear in known breaches).'
    severity: 'Medium'
    enabled: rulesEnabled
    query: replace(loadTextContent('sentinel/rules/breachwatch-high-risk.kql'), 'let breachWatchRecordThreshold = 1;', 'let breachWatchRecordThreshold = ${breachWatchRecordThreshold};')
    queryFrequency: 'PT1H'
    queryPeriod: 'PT1H'
    triggerOperator: 'GreaterThan'
    triggerThreshold: 0
    suppressionDuration: 'PT1H'
    suppressionEnabled: false
    tactics: [
      'InitialAccess'
      'CredentialAccess'
    ]
    techniques: [
      'T1078'
      'T1110'
    ]
    entityMappings: [
      {
        entityType: 'Account'
        fieldMappings: [
          {
            identifier: 'FullName'
            columnName: 'Username'
          }
        ]
      }
      {
        entityType: 'IP'
        fieldMappings: [
          {
            identifier: 'Address'
            columnName: 'RemoteAddress'
          }
        ]
      }
    ]
    customDetails: {
      HighRiskRecords: 'HighRiskRecords'
    }
    eventGroupingSettings: {
      aggregationKind: 'AlertPerResult'
    }
  }
  dependsOn: [
    fnKeeperAuditEvents
    fnvimAuthenticationKeeperSecurity
    fnASimAuthenticationKeeperSecurity
    fnvimAuditEventKeeperSecurity
    fnASimAuditEventKeeperSecurity
  ]
}

resource adminRoleOrPolicyChange 'Microsoft.SecurityInsights/alertRules@2024-09-01' = {
  scope: workspace
  name: '5f2b8c1e-3a4d-4e6f-9b7a-1c2d3e4f5a04'
  kind: 'Scheduled'
  properties: {
    displayName: 'Keeper: administrative permission, role or enforcement policy changed'
    description: 'An administrative permission was added or removed, or a role or enforcement policy event occurred in the Keeper enterprise.'
    severity: 'Medium'
    enabled: rulesEnabled
    query: loadTextContent('sentinel/rules/admin-role-or-policy-change.kql')
    queryFrequency: 'PT1H'
    queryPeriod: 'PT1H'
    triggerOperator: 'GreaterThan'
    triggerThreshold: 0
    suppressionDuration: 'PT1H'
    suppressionEnabled: false
    tactics: [
      'PrivilegeEscalation'
      'Persistence'
      'DefenseEvasion'
    ]
    techniques: [
      'T1098'
      'T1484'
    ]
    entityMappings: [
      {
        entityType: 'Account'
        fieldMappings: [
          {
            identifier: 'FullName'
            columnName: 'Username'
          }
        ]
      }
      {
        entityType: 'IP'
        fieldMappings: [
          {
            identifier: 'Address'
            columnName: 'RemoteAddress'
          }
        ]
      }
    ]
    customDetails: {
      AuditEvent: 'AuditEvent'
      RoleId: 'RoleId'
      Enforcement: 'Enforcement'
    }
    eventGroupingSettings: {
      aggregationKind: 'AlertPerResult'
    }
  }
  dependsOn: [
    fnKeeperAuditEvents
    fnvimAuthenticationKeeperSecurity
    fnASimAuthenticationKeeperSecurity
    fnvimAuditEventKeeperSecurity
    fnASimAuditEventKeeperSecurity
  ]
}

resource shareOutsideOrganisation 'Microsoft.SecurityInsights/alertRules@2024-09-01' = {
  scope: workspace
  name: '5f2b8c1e-3a4d-4e6f-9b7a-1c2d3e4f5a05'
  kind: 'Scheduled'
  properties: {
    displayName: 'Keeper: record or folder shared outside the organisation'
    description: 'A Keeper record or folder was shared with an outside user, or with an address outside organisationDomains.'
    severity: 'Medium'
    enabled: rulesEnabled
    query: replace(loadTextContent('sentinel/rules/share-outside-organisation.kql'), 'let organisationDomains = dynamic([]);', 'let organisationDomains = dynamic(${string(organisationDomains)});')
    queryFrequency: 'PT1H'
    queryPeriod: 'PT1H'
    triggerOperator: 'GreaterThan'
    triggerThreshold: 0
    suppressionDuration: 'PT1H'
    suppressionEnabled: false
    tactics: [
      'Exfiltration'
      'Collection'
    ]
    techniques: [
      'T1567'
      'T1213'
    ]
    entityMappings: [
      {
        entityType: 'Account'
        fieldMappings: [
          {
            identifier: 'FullName'
            columnName: 'Username'
          }
        ]
      }
      {
        entityType: 'Account'
        fieldMappings: [
          {
            identifier: 'FullName'
            columnName: 'ToUsername'
          }
        ]
      }
      {
        entityType: 'IP'
        fieldMappings: [
          {
            identifier: 'Address'
            columnName: 'RemoteAddress'
          }
        ]
      }
    ]
    customDetails: {
      AuditEvent: 'AuditEvent'
      RecipientDomain: 'RecipientDomain'
    }
    eventGroupingSettings: {
      aggregationKind: 'AlertPerResult'
    }
  }
  dependsOn: [
    fnKeeperAuditEvents
    fnvimAuthenticationKeeperSecurity
    fnASimAuthenticationKeeperSecurity
    fnvimAuditEventKeeperSecurity
    fnASimAuditEventKeeperSecurity
  ]
}

resource auditSyncChanged 'Microsoft.SecurityInsights/alertRules@2024-09-01' = {
  scope: workspace
  name: '5f2b8c1e-3a4d-4e6f-9b7a-1c2d3e4f5a06'
  kind: 'Scheduled'
  properties: {
    displayName: 'Keeper: audit or SIEM integration changed or disabled'
    description: 'An audit_sync_* event: the Keeper audit log or SIEM integration was set up, changed or switched off.'
    severity: 'High'
    enabled: rulesEnabled
    query: loadTextContent('sentinel/rules/audit-sync-changed.kql')
    queryFrequency: 'PT1H'
    queryPeriod: 'PT1H'
    triggerOperator: 'GreaterThan'
    triggerThreshold: 0
    suppressionDuration: 'PT1H'
    suppressionEnabled: false
    tactics: [
      'DefenseEvasion'
    ]
    techniques: [
      'T1562'
    ]
    entityMappings: [
      {
        entityType: 'Account'
        fieldMappings: [
          {
            identifier: 'FullName'
            columnName: 'Username'
          }
        ]
      }
      {
        entityType: 'IP'
        fieldMappings: [
          {
            identifier: 'Address'
            columnName: 'RemoteAddress'
          }
        ]
      }
    ]
    customDetails: {
      AuditEvent: 'AuditEvent'
    }
    eventGroupingSettings: {
      aggregationKind: 'AlertPerResult'
    }
  }
  dependsOn: [
    fnKeeperAuditEvents
    fnvimAuthenticationKeeperSecurity
    fnASimAuthenticationKeeperSecurity
    fnvimAuditEventKeeperSecurity
    fnASimAuditEventKeeperSecurity
  ]
}

@description('Ids (names) of the analytic rules.')
output ruleIds array = ['5f2b8c1e-3a4d-4e6f-9b7a-1c2d3e4f5a01' '5f2b8c1e-3a4d-4e6f-9b7a-1c2d3e4f5a02' '5f2b8c1e-3a4d-4e6f-9b7a-1c2d3e4f5a03' '5f2b8c1e-3a4d-4e6f-9b7a-1c2d3e4f5a04' '5f2b8c1e-3a4d-4e6f-9b7a-1c2d3e4f5a05' '5f2b8c1e-3a4d-4e6f-9b7a-1c2d3e4f5a06']
