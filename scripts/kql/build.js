#!/usr/bin/env node
// Writes the Sentinel templates from their sources in infra/azure/sentinel/ (KQL files, rules.json,
// functions.json, keeper-solution-table.json), so the KQL that scripts/check-kql.sh analyses is
// byte for byte the KQL that deploys:
//   infra/azure/sentinel.bicep       the Sentinel content module (loadTextContent of the KQL files)
//   infra/azure/sentinel.json        the same in ARM JSON
//   infra/azure/keeper-solution.json keeper-solution.bicep in ARM JSON
//   infra/azure/keeper-solution-role.json keeper-solution-role.bicep in ARM JSON
//   infra/azure/main.json            the two modules' nested deployments get these templates inlined
//                                    (as a Bicep build of main.bicep inlines modules)
//   infra/README.md                  the rule list (what each rule detects, with its KQL)
// Usage: node scripts/kql/build.js [--check]   (--check: exit 1 if a written file would change)
'use strict';

const fs = require('fs');
const path = require('path');

const ROOT = path.resolve(__dirname, '..', '..');
const AZURE = path.join(ROOT, 'infra', 'azure');
const SENTINEL = path.join(AZURE, 'sentinel');
const readJson = (file) => JSON.parse(fs.readFileSync(file, 'utf8'));
const readText = (file) => fs.readFileSync(file, 'utf8');

// API versions present in the ARM schema snapshot the templates are validated against.
const API = {
  savedSearches: '2023-09-01',
  alertRules: '2024-09-01',
  tables: '2022-10-01',
  dcr: '2024-03-11',
  roleAssignments: '2022-04-01',
  deployments: '2022-09-01',
};
const ARM_SCHEMA = 'https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#';
const MMP_ROLE = '3913510d-42f4-4e42-8a64-420c390055eb'; // Monitoring Metrics Publisher
const RULES_TEMPLATE_NAME = 'logrelay-sentinel-content';
const SOLUTION_TEMPLATE_NAME = 'logrelay-keeper-solution';
const SOLUTION_ROLE_TEMPLATE_NAME = 'logrelay-keeper-solution-function-role';

/** A string literal inside an ARM expression ('' escapes '). */
const armString = (text) => `'${text.replace(/'/g, "''")}'`;
/** A Bicep single-quoted string literal. */
const bicepString = (text) => `'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\$\{/g, '\\${')}'`;
/** ARM would read a leading [ as an expression; no literal here may start with one. */
function literal(text) {
  if (text.startsWith('[')) throw new Error(`literal starts with [: ${text.slice(0, 40)}`);
  return text;
}
const ruleKey = (rule) => rule.file.replace(/\.kql$/, '');

function sources() {
  return {
    rulesDoc: readJson(path.join(SENTINEL, 'rules', 'rules.json')),
    functionsDoc: readJson(path.join(SENTINEL, 'parsers', 'functions.json')),
    solution: readJson(path.join(SENTINEL, 'keeper-solution-table.json')),
    transform: readText(path.join(SENTINEL, 'dcr', 'keeper-solution-transform.kql')),
  };
}

function ruleProperties(rule, query, enabled) {
  return {
    displayName: rule.displayName,
    description: rule.description,
    severity: rule.severity,
    enabled,
    query,
    queryFrequency: rule.queryFrequency,
    queryPeriod: rule.queryPeriod,
    triggerOperator: 'GreaterThan',
    triggerThreshold: 0,
    suppressionDuration: 'PT1H',
    suppressionEnabled: false,
    tactics: rule.tactics,
    techniques: rule.techniques,
    entityMappings: rule.entityMappings,
    customDetails: rule.customDetails,
    eventGroupingSettings: { aggregationKind: 'AlertPerResult' },
  };
}

function armParameter(spec) {
  const out = { type: spec.type, defaultValue: spec.default };
  if (spec.minValue !== undefined) out.minValue = spec.minValue;
  if (spec.maxValue !== undefined) out.maxValue = spec.maxValue;
  out.metadata = { description: spec.description };
  return out;
}

function sentinelJson({ rulesDoc, functionsDoc }) {
  const parameters = {
    workspaceName: { type: 'string', metadata: { description: 'Existing Log Analytics workspace (in this resource group) with Microsoft Sentinel enabled.' } },
    rulesEnabled: { type: 'bool', defaultValue: true, metadata: { description: 'Create the analytic rules enabled.' } },
  };
  for (const [name, spec] of Object.entries(rulesDoc.parameters)) parameters[name] = armParameter(spec);
  const queries = {};
  for (const rule of rulesDoc.rules) queries[ruleKey(rule)] = literal(readText(path.join(SENTINEL, 'rules', rule.file)));
  const resources = [];
  const functionId = (alias) => `[resourceId('Microsoft.OperationalInsights/workspaces/savedSearches', parameters('workspaceName'), ${armString(alias)})]`;
  let previous = null;
  for (const f of functionsDoc.functions) {
    const properties = {
      category: 'Keeper Security',
      displayName: f.displayName,
      query: literal(readText(path.join(SENTINEL, 'parsers', f.file))),
      functionAlias: f.alias,
    };
    if (f.parameters) properties.functionParameters = f.parameters;
    properties.version = 2;
    const resource = {
      type: 'Microsoft.OperationalInsights/workspaces/savedSearches',
      apiVersion: API.savedSearches,
      name: `[format('{0}/{1}', parameters('workspaceName'), ${armString(f.alias)})]`,
      properties,
    };
    // Each function may call the one before (KeeperAuditEvents, then vim*, then ASim*).
    if (previous) resource.dependsOn = [functionId(previous)];
    resources.push(resource);
    previous = f.alias;
  }
  const allFunctions = functionsDoc.functions.map((f) => functionId(f.alias));
  for (const rule of rulesDoc.rules) {
    let query = `variables('queries')[${armString(ruleKey(rule))}]`;
    for (const sub of rule.substitutions) {
      const spec = rulesDoc.parameters[sub.parameter];
      const value = spec.type === 'array' ? `string(parameters(${armString(sub.parameter)}))` : `parameters(${armString(sub.parameter)})`;
      query = `replace(${query}, ${armString(sub.line)}, format(${armString(sub.template)}, ${value}))`;
    }
    resources.push({
      type: 'Microsoft.SecurityInsights/alertRules',
      apiVersion: API.alertRules,
      scope: "[format('Microsoft.OperationalInsights/workspaces/{0}', parameters('workspaceName'))]",
      name: rule.id,
      kind: 'Scheduled',
      properties: ruleProperties(rule, `[${query}]`, "[parameters('rulesEnabled')]"),
      dependsOn: allFunctions,
    });
  }
  return {
    $schema: ARM_SCHEMA,
    contentVersion: '1.0.0.0',
    metadata: { description: 'logrelay Sentinel content for KeeperAuditEvents_CL: the KeeperAuditEvents parser, ASIM parsers and analytic rules. ARM JSON of sentinel.bicep, written by scripts/kql/build.js from infra/azure/sentinel/.' },
    parameters,
    variables: { queries },
    resources,
    outputs: {
      ruleIds: { type: 'array', value: rulesDoc.rules.map((r) => r.id) },
    },
  };
}

function sentinelBicep({ rulesDoc, functionsDoc }) {
  const lines = [];
  const out = (text = '') => lines.push(text);
  out('// logrelay Sentinel content for KeeperAuditEvents_CL (written by scripts/kql/build.js from');
  out('// infra/azure/sentinel/; edit the sources there): the KeeperAuditEvents parser function, the ASIM');
  out('// Authentication and Audit Event parsers, and the scheduled analytic rules. The workspace must');
  out('// have Microsoft Sentinel enabled. sentinel.json is the same template in ARM JSON.');
  out();
  out("targetScope = 'resourceGroup'");
  out();
  out("@description('Existing Log Analytics workspace (in this resource group) with Microsoft Sentinel enabled.')");
  out('param workspaceName string');
  out();
  out("@description('Create the analytic rules enabled.')");
  out('param rulesEnabled bool = true');
  for (const [name, spec] of Object.entries(rulesDoc.parameters)) {
    out();
    out(`@description(${bicepString(spec.description)})`);
    if (spec.minValue !== undefined) out(`@minValue(${spec.minValue})`);
    if (spec.maxValue !== undefined) out(`@maxValue(${spec.maxValue})`);
    const value = spec.type === 'array' ? `[${spec.default.map(bicepString).join(' ')}]` : String(spec.default);
    out(`param ${name} ${spec.type} = ${value}`);
  }
  out();
  out("resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {");
  out('  name: workspaceName');
  out('}');
  let previous = null;
  const symbol = (alias) => `fn${alias}`;
  for (const f of functionsDoc.functions) {
    out();
    out(`resource ${symbol(f.alias)} 'Microsoft.OperationalInsights/workspaces/savedSearches@${API.savedSearches}' = {`);
    out('  parent: workspace');
    out(`  name: ${bicepString(f.alias)}`);
    out('  properties: {');
    out("    category: 'Keeper Security'");
    out(`    displayName: ${bicepString(f.displayName)}`);
    out(`    query: loadTextContent('sentinel/parsers/${f.file}')`);
    out(`    functionAlias: ${bicepString(f.alias)}`);
    if (f.parameters) out(`    functionParameters: ${bicepString(f.parameters)}`);
    out('    version: 2');
    out('  }');
    if (previous) {
      out('  dependsOn: [');
      out(`    ${symbol(previous)}`);
      out('  ]');
    }
    out('}');
    previous = f.alias;
  }
  for (const rule of rulesDoc.rules) {
    const key = ruleKey(rule).replace(/-(\w)/g, (_, c) => c.toUpperCase());
    let query = `loadTextContent('sentinel/rules/${rule.file}')`;
    for (const sub of rule.substitutions) {
      const spec = rulesDoc.parameters[sub.parameter];
      const value = spec.type === 'array' ? `string(${sub.parameter})` : sub.parameter;
      const [head, tail] = sub.template.split('{0}');
      query = `replace(${query}, ${bicepString(sub.line)}, '${head}\${${value}}${tail}')`;
    }
    const props = ruleProperties(rule, null, null);
    out();
    out(`resource ${key} 'Microsoft.SecurityInsights/alertRules@${API.alertRules}' = {`);
    out('  scope: workspace');
    out(`  name: ${bicepString(rule.id)}`);
    out("  kind: 'Scheduled'");
    out('  properties: {');
    for (const [name, value] of Object.entries(props)) {
      if (name === 'query') out(`    query: ${query}`);
      else if (name === 'enabled') out('    enabled: rulesEnabled');
      else out(`    ${name}: ${bicepValue(value, '    ')}`);
    }
    out('  }');
    out('  dependsOn: [');
    for (const f of functionsDoc.functions) out(`    ${symbol(f.alias)}`);
    out('  ]');
    out('}');
  }
  out();
  out("@description('Ids (names) of the analytic rules.')");
  out(`output ruleIds array = [${rulesDoc.rules.map((r) => bicepString(r.id)).join(' ')}]`);
  return `${lines.join('\n')}\n`;
}

/** A JSON value as Bicep (multi-line objects and arrays). */
function bicepValue(value, indent) {
  if (Array.isArray(value)) {
    if (!value.length) return '[]';
    return `[\n${value.map((v) => `${indent}  ${bicepValue(v, `${indent}  `)}`).join('\n')}\n${indent}]`;
  }
  if (value && typeof value === 'object') {
    const entries = Object.entries(value);
    if (!entries.length) return '{}';
    const key = (k) => (/^[A-Za-z_]\w*$/.test(k) ? k : bicepString(k));
    return `{\n${entries.map(([k, v]) => `${indent}  ${key(k)}: ${bicepValue(v, `${indent}  `)}`).join('\n')}\n${indent}}`;
  }
  if (typeof value === 'string') return bicepString(value);
  return String(value);
}

function solutionJson({ solution, transform }) {
  return {
    $schema: ARM_SCHEMA,
    contentVersion: '1.0.0.0',
    metadata: { description: 'logrelay solution-compatible mode: table KeeperSecurityEventNewLogs_CL (the Keeper Security solution\'s columns plus EventId) and logrelay\'s own DCR for stream Custom-KeeperSecurityEventNewLogs. ARM JSON of keeper-solution.bicep, written by scripts/kql/build.js.' },
    parameters: {
      location: { type: 'string', defaultValue: '[resourceGroup().location]', metadata: { description: 'Region of the data collection rule.' } },
      workspaceName: { type: 'string', metadata: { description: 'Existing Log Analytics workspace (in this resource group) that holds or gets KeeperSecurityEventNewLogs_CL.' } },
      dcrName: { type: 'string', defaultValue: 'logrelay-keeper-solution-dcr', metadata: { description: "Name of logrelay's solution-compatible data collection rule." } },
      dataCollectionEndpointId: { type: 'string', defaultValue: '', metadata: { description: "Resource id of a data collection endpoint to send through; empty: the DCR's own endpoint." } },
      principalId: { type: 'string', defaultValue: '', metadata: { description: 'Object ID of the principal that sends; empty: no role assignment.' } },
      principalType: { type: 'string', defaultValue: 'ServicePrincipal', allowedValues: ['ServicePrincipal', 'User', 'Group'], metadata: { description: 'Type of principalId.' } },
      retentionInDays: { type: 'int', defaultValue: 90, minValue: 4, maxValue: 730, metadata: { description: 'Interactive retention of the table, in days.' } },
    },
    variables: {
      table: solution.table,
      stream: solution.stream,
      tableColumns: solution.tableColumns,
      streamColumns: solution.streamColumns,
      transformKql: literal(transform),
      monitoringMetricsPublisherRoleId: MMP_ROLE,
      ingestionApiVersion: '2023-01-01',
    },
    resources: [
      {
        type: 'Microsoft.OperationalInsights/workspaces/tables',
        apiVersion: API.tables,
        name: "[format('{0}/{1}', parameters('workspaceName'), variables('table'))]",
        properties: {
          plan: 'Analytics',
          retentionInDays: "[parameters('retentionInDays')]",
          schema: { name: "[variables('table')]", columns: "[variables('tableColumns')]" },
        },
      },
      {
        type: 'Microsoft.Insights/dataCollectionRules',
        apiVersion: API.dcr,
        name: "[parameters('dcrName')]",
        location: "[parameters('location')]",
        kind: 'Direct',
        properties: {
          dataCollectionEndpointId: "[if(empty(parameters('dataCollectionEndpointId')), null(), parameters('dataCollectionEndpointId'))]",
          streamDeclarations: { "[variables('stream')]": { columns: "[variables('streamColumns')]" } },
          destinations: {
            logAnalytics: [{ name: 'workspace', workspaceResourceId: "[resourceId('Microsoft.OperationalInsights/workspaces', parameters('workspaceName'))]" }],
          },
          dataFlows: [{
            streams: ["[variables('stream')]"],
            destinations: ['workspace'],
            transformKql: "[variables('transformKql')]",
            outputStream: "[format('Custom-{0}', variables('table'))]",
          }],
        },
        dependsOn: ["[resourceId('Microsoft.OperationalInsights/workspaces/tables', parameters('workspaceName'), variables('table'))]"],
      },
      {
        condition: "[not(empty(parameters('principalId')))]",
        type: 'Microsoft.Authorization/roleAssignments',
        apiVersion: API.roleAssignments,
        scope: "[format('Microsoft.Insights/dataCollectionRules/{0}', parameters('dcrName'))]",
        name: "[guid(resourceId('Microsoft.Insights/dataCollectionRules', parameters('dcrName')), parameters('principalId'), variables('monitoringMetricsPublisherRoleId'))]",
        properties: {
          roleDefinitionId: "[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', variables('monitoringMetricsPublisherRoleId'))]",
          principalId: "[parameters('principalId')]",
          principalType: "[parameters('principalType')]",
        },
        dependsOn: ["[resourceId('Microsoft.Insights/dataCollectionRules', parameters('dcrName'))]"],
      },
    ],
    outputs: {
      logsIngestionEndpoint: {
        type: 'string',
        value: "[format('{0}/dataCollectionRules/{1}/streams/{2}?api-version={3}', if(empty(parameters('dataCollectionEndpointId')), reference(resourceId('Microsoft.Insights/dataCollectionRules', parameters('dcrName')), '2024-03-11').endpoints.logsIngestion, reference(parameters('dataCollectionEndpointId'), '2024-03-11').logsIngestion.endpoint), reference(resourceId('Microsoft.Insights/dataCollectionRules', parameters('dcrName')), '2024-03-11').immutableId, variables('stream'), variables('ingestionApiVersion'))]",
        metadata: { description: "The Endpoint URL for LOGS_INGESTION_ENDPOINT (and for Keeper's Admin Console push) in solution-compatible mode." },
      },
      dcrImmutableId: {
        type: 'string',
        value: "[reference(resourceId('Microsoft.Insights/dataCollectionRules', parameters('dcrName')), '2024-03-11').immutableId]",
        metadata: { description: "The solution-compatible DCR's immutable id (dcr-...)." },
      },
    },
  };
}

function solutionRoleJson() {
  return {
    $schema: ARM_SCHEMA,
    contentVersion: '1.0.0.0',
    metadata: { description: 'logrelay solution-compatible mode: Monitoring Metrics Publisher for one more sender on the solution-compatible DCR. ARM JSON of keeper-solution-role.bicep, written by scripts/kql/build.js.' },
    parameters: {
      dcrName: { type: 'string', metadata: { description: 'Name of the solution-compatible data collection rule (keeper-solution.bicep).' } },
      principalId: { type: 'string', metadata: { description: 'Object ID of the service principal that sends.' } },
      assignmentSeed: { type: 'string', metadata: { description: "A name that makes the role assignment's id unique for this principal." } },
    },
    variables: { monitoringMetricsPublisherRoleId: MMP_ROLE },
    resources: [
      {
        type: 'Microsoft.Authorization/roleAssignments',
        apiVersion: API.roleAssignments,
        scope: "[format('Microsoft.Insights/dataCollectionRules/{0}', parameters('dcrName'))]",
        name: "[guid(resourceId('Microsoft.Insights/dataCollectionRules', parameters('dcrName')), parameters('assignmentSeed'), variables('monitoringMetricsPublisherRoleId'))]",
        properties: {
          roleDefinitionId: "[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', variables('monitoringMetricsPublisherRoleId'))]",
          principalId: "[parameters('principalId')]",
          principalType: 'ServicePrincipal',
        },
      },
    ],
  };
}

/** main.json with the module templates inlined into its nested deployments (found by name). */
function inlineIntoMain(main, templates) {
  const copy = JSON.parse(JSON.stringify(main));
  for (const [name, template] of Object.entries(templates)) {
    const deployment = copy.resources.find((r) => r.type === 'Microsoft.Resources/deployments' && r.name === name);
    if (!deployment) throw new Error(`main.json has no Microsoft.Resources/deployments named ${name}`);
    deployment.properties.template = template;
  }
  return copy;
}

const json = (value) => `${JSON.stringify(value, null, 2)}\n`;

const RULES_BEGIN = '<!-- rules:begin -->';
const RULES_END = '<!-- rules:end -->';

/** infra/README.md with the rule list (what each detects, with its KQL) between the markers. */
function readmeWithRules(readme, { rulesDoc }) {
  const begin = readme.indexOf(RULES_BEGIN);
  const end = readme.indexOf(RULES_END);
  if (begin < 0 || end < begin) throw new Error(`infra/README.md lacks ${RULES_BEGIN} ... ${RULES_END}`);
  const parts = [RULES_BEGIN, '<!-- written by scripts/kql/build.js from infra/azure/sentinel/rules/; edit the sources -->', ''];
  for (const rule of rulesDoc.rules) {
    parts.push(`#### ${rule.displayName}`, '');
    parts.push(`${rule.description} Severity ${rule.severity}; runs every ${rule.queryFrequency} over ${rule.queryPeriod}.`);
    parts.push(`MITRE ATT&CK: ${rule.tactics.join(', ')}; ${rule.techniques.join(', ')}.`);
    const subs = rule.substitutions.map((sub) => `\`${sub.parameter}\` (\`${sub.line}\`)`);
    if (subs.length) parts.push(`Parameters: ${subs.join(', ')}.`);
    parts.push(`Query: [${rule.file}](azure/sentinel/rules/${rule.file})`, '');
    parts.push('```kusto', readText(path.join(SENTINEL, 'rules', rule.file)).trimEnd(), '```', '');
  }
  return `${readme.slice(0, begin)}${parts.join('\n')}${readme.slice(end)}`;
}

function main() {
  const checkOnly = process.argv.includes('--check');
  const src = sources();
  const sentinel = sentinelJson(src);
  const solution = solutionJson(src);
  const solutionRole = solutionRoleJson();
  const mainPath = path.join(AZURE, 'main.json');
  const readmePath = path.join(ROOT, 'infra', 'README.md');
  const outputs = {
    [path.join(AZURE, 'sentinel.json')]: json(sentinel),
    [path.join(AZURE, 'sentinel.bicep')]: sentinelBicep(src),
    [path.join(AZURE, 'keeper-solution.json')]: json(solution),
    [path.join(AZURE, 'keeper-solution-role.json')]: json(solutionRole),
    [mainPath]: json(inlineIntoMain(readJson(mainPath), {
      [RULES_TEMPLATE_NAME]: sentinel,
      [SOLUTION_TEMPLATE_NAME]: solution,
      [SOLUTION_ROLE_TEMPLATE_NAME]: solutionRole,
    })),
    [readmePath]: readmeWithRules(readText(readmePath), src),
  };
  const stale = [];
  for (const [file, text] of Object.entries(outputs)) {
    const current = fs.existsSync(file) ? readText(file) : null;
    if (current === text) continue;
    if (checkOnly) stale.push(path.relative(ROOT, file));
    else fs.writeFileSync(file, text);
  }
  if (stale.length) {
    console.error(`build.js: out of date (run node scripts/kql/build.js): ${stale.join(', ')}`);
    process.exit(1);
  }
  console.log(`build.js: ${checkOnly ? 'up to date' : 'written'}: sentinel.bicep, sentinel.json, keeper-solution.json, keeper-solution-role.json, main.json modules, infra/README.md rules`);
}

main();
