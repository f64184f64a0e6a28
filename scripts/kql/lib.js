// The KQL checker's library: Microsoft's Kusto language service (npm @kusto/language-service-next,
// Kusto.Language compiled to JavaScript) analysing every KQL text the project ships against the
// table schemas `logrelay schema` prints, plus the transformation-KQL limits of DCR transforms.
'use strict';

const fs = require('fs');
const path = require('path');

const ROOT = path.resolve(__dirname, '..', '..');
const SENTINEL = path.join(ROOT, 'infra', 'azure', 'sentinel');

/** Loads Kusto.Language once (it defines the global `Kusto`). */
function kusto() {
  if (!global.Kusto) {
    const base = path.join(ROOT, '.tools', 'kql', 'node_modules', '@kusto', 'language-service-next');
    if (!fs.existsSync(path.join(base, 'Kusto.Language.Bridge.js'))) {
      throw new Error(`${base} is missing: run scripts/tools.sh kql`);
    }
    require(path.join(base, 'bridge.js'));
    require(path.join(base, 'Kusto.Language.Bridge.js'));
  }
  return global.Kusto.Language;
}

const readJson = (file) => JSON.parse(fs.readFileSync(file, 'utf8'));
const readText = (file) => fs.readFileSync(file, 'utf8');

/** Table/stream column type -> Kusto scalar type (the tables API spells dateTime; Kusto bool). */
function kustoType(type) {
  const map = { datetime: 'datetime', boolean: 'bool', guid: 'guid' };
  const lower = type.toLowerCase();
  return map[lower] || lower;
}

/** `(a:string, b:int)` from [{name, type}]. */
function schemaText(columns) {
  return `(${columns.map((c) => `['${c.name}']:${kustoType(c.type)}`).join(', ')})`;
}

/** Splits `a:int=1, b:dynamic=dynamic([1, 2])` at top-level commas. */
function splitParameters(text) {
  const parts = [];
  let depth = 0;
  let current = '';
  for (const ch of text) {
    if (ch === '(' || ch === '[') depth += 1;
    if (ch === ')' || ch === ']') depth -= 1;
    if (ch === ',' && depth === 0) {
      parts.push(current.trim());
      current = '';
    } else {
      current += ch;
    }
  }
  if (current.trim()) parts.push(current.trim());
  return parts.map((part) => {
    const match = /^(\w+)\s*:\s*(\w+)\s*=\s*(.+)$/s.exec(part);
    if (!match) throw new Error(`function parameter '${part}' is not name:type=default`);
    return { name: match[1], type: match[2], default: match[3] };
  });
}

/**
 * Everything the checker knows: tables (from `logrelay schema` and the solution table file),
 * the workspace functions (parsers), and every KQL text shipped, each with what it runs against.
 */
function collect(schemaDoc) {
  const solution = readJson(path.join(SENTINEL, 'keeper-solution-table.json'));
  const streamName = schemaDoc.stream;
  const tables = {
    [schemaDoc.table]: schemaDoc.tableColumns,
    [solution.table]: solution.tableColumns,
  };
  const functionsDoc = readJson(path.join(SENTINEL, 'parsers', 'functions.json'));
  const functions = functionsDoc.functions.map((f) => ({
    alias: f.alias,
    parameters: f.parameters,
    body: readText(path.join(SENTINEL, 'parsers', f.file)),
    file: path.join('infra/azure/sentinel/parsers', f.file),
  }));
  const texts = [];
  texts.push({
    what: `logrelay DCR transform (${streamName} -> ${schemaDoc.outputStream})`,
    kind: 'transform',
    text: schemaDoc.transformKql,
    source: schemaDoc.streamDeclaration[streamName].columns,
    output: schemaDoc.tableColumns,
  });
  texts.push({
    what: `solution-compatible DCR transform (${solution.stream} -> Custom-${solution.table})`,
    kind: 'transform',
    file: 'infra/azure/sentinel/dcr/keeper-solution-transform.kql',
    text: readText(path.join(SENTINEL, 'dcr', 'keeper-solution-transform.kql')),
    source: solution.streamColumns,
    output: solution.tableColumns,
  });
  for (const f of functions) {
    const lets = f.parameters ? splitParameters(f.parameters).map((p) => `let ${p.name} = ${p.default};\n`).join('') : '';
    texts.push({ what: `function ${f.alias}`, kind: 'function', file: f.file, prefix: lets, text: f.body });
  }
  const rulesDoc = readJson(path.join(SENTINEL, 'rules', 'rules.json'));
  for (const rule of rulesDoc.rules) {
    const file = path.join('infra/azure/sentinel/rules', rule.file);
    const text = readText(path.join(ROOT, file));
    texts.push({ what: `rule "${rule.displayName}"`, kind: 'rule', file, text, rule });
    // The query as a deployment with non-default parameters makes it (each substitution must hit
    // exactly one line, or the parameter would silently do nothing).
    let substituted = text;
    for (const sub of rule.substitutions) {
      const hits = text.split(sub.line).length - 1;
      if (hits !== 1) {
        texts.push({ what: `rule "${rule.displayName}"`, kind: 'error', file, message: `substitution line '${sub.line}' occurs ${hits} times (must be once)` });
        continue;
      }
      const param = rulesDoc.parameters[sub.parameter];
      if (!param) {
        texts.push({ what: `rule "${rule.displayName}"`, kind: 'error', file, message: `unknown parameter ${sub.parameter}` });
        continue;
      }
      const sample = param.type === 'array' ? JSON.stringify(['example.com', 'example.org']) : String(param.maxValue || param.default + 1);
      substituted = substituted.replace(sub.line, sub.template.replace('{0}', sample));
    }
    if (rule.substitutions.length) {
      texts.push({ what: `rule "${rule.displayName}" (parameters set)`, kind: 'rule', file, text: substituted, rule });
    }
  }
  const workbookFile = 'infra/azure/sentinel/workbook/keeper-workbook.json';
  const workbook = readJson(path.join(ROOT, workbookFile));
  for (const item of workbook.items) {
    if (item.type === 3) {
      texts.push({ what: `workbook query "${item.content.title}"`, kind: 'workbook', file: workbookFile, text: item.content.query });
    }
  }
  return { tables, functions, texts, solution };
}

const stateCache = new Map();

/** The Kusto global state: a database with the tables and the workspace functions (cached). */
function globals(K, tables, functions) {
  const key = JSON.stringify([tables, functions]);
  if (!stateCache.has(key)) stateCache.set(key, buildGlobals(K, tables, functions));
  return stateCache.get(key);
}

function buildGlobals(K, tables, functions) {
  const symbols = [];
  for (const [name, columns] of Object.entries(tables)) {
    symbols.push(new K.Symbols.TableSymbol.$ctor7(name, schemaText(columns), null));
  }
  for (const f of functions) {
    symbols.push(new K.Symbols.FunctionSymbol.$ctor16(f.alias, `(${f.parameters || ''})`, `{\n${f.body}\n}`, null));
  }
  const db = new K.Symbols.DatabaseSymbol.ctor('workspace', symbols);
  return K.GlobalState.Default.WithDatabase(db);
}

/** Line and column (1-based) of `offset` in `text`. */
function position(text, offset) {
  const before = text.slice(0, offset).split('\n');
  return `${before.length}:${before[before.length - 1].length + 1}`;
}

/** Error and warning diagnostics of `text` (suggestions are style hints, not failures). */
function diagnose(K, state, text) {
  const code = K.KustoCode.ParseAndAnalyze(text, state);
  const list = code.GetDiagnostics();
  const found = [];
  for (let i = 0; i < list.Count; i += 1) {
    const d = list.getItem(i);
    if (d.Severity === 'Error' || d.Severity === 'Warning') {
      found.push({ severity: d.Severity, code: d.Code, message: d.Message, at: position(text, d.Start) });
    }
  }
  return { code, found };
}

// Transformation KQL limits: only these tabular operators and scalar functions, per
// https://learn.microsoft.com/azure/azure-monitor/data-collection/data-collection-transformations-kql
// ("Only the operators listed in this article are supported in transformations"; no operator
// that works on several rows, e.g. summarize; parse limited to 10 columns per statement).
const TRANSFORM_OPERATORS = new Set([
  'FilterOperator', // where
  'ExtendOperator',
  'ProjectOperator',
  'ProjectAwayOperator',
  'ProjectRenameOperator',
  'ParseOperator',
  'PrintOperator',
]);
const TRANSFORM_FUNCTIONS = new Set([
  // Conversion.
  'tostring', 'toint', 'tolong', 'todouble', 'toreal', 'todatetime', 'totimespan', 'tobool', 'toguid',
  // Conditional and null handling.
  'iif', 'iff', 'case', 'isnull', 'isnotnull', 'isempty', 'isnotempty', 'max_of', 'min_of',
  // Date and time.
  'now', 'ago', 'datetime_add', 'datetime_diff', 'startofday', 'endofday', 'bin', 'floor',
  // Strings.
  'strcat', 'strcat_delim', 'substring', 'strlen', 'split', 'tolower', 'toupper', 'indexof',
  'extract', 'countof', 'hash_sha256', 'base64_encodestring', 'base64_decodestring',
  // Dynamic.
  'parse_json', 'pack', 'pack_array', 'array_length',
]);
const MAX_PARSE_COLUMNS = 10; // same page: "limited to 10 columns per statement"

/** Operators and functions of a DCR transform outside the documented subset. */
function transformViolations(K, code) {
  const problems = [];
  const nodes = code.Syntax.GetDescendants(K.Syntax.SyntaxNode, null);
  for (let i = 0; i < nodes.Count; i += 1) {
    const node = nodes.getItem(i);
    const kind = System.Enum.toString(K.Syntax.SyntaxKind, node.Kind);
    if (kind.endsWith('Operator') && !TRANSFORM_OPERATORS.has(kind)) {
      problems.push(`operator ${kind} is not supported in transformations`);
    }
    if (kind === 'FunctionCallExpression') {
      const name = node.Name.SimpleName;
      if (!TRANSFORM_FUNCTIONS.has(name)) problems.push(`function ${name}() is not supported in transformations`);
    }
    if (kind === 'ParseOperator') {
      const declared = node.GetDescendants(K.Syntax.NameDeclaration, null).Count;
      if (declared > MAX_PARSE_COLUMNS) problems.push(`parse declares ${declared} columns (at most ${MAX_PARSE_COLUMNS})`);
    }
  }
  return problems;
}

/** The result columns of an analysed query: [{name, type}]. */
function resultColumns(code) {
  const type = code.ResultType;
  if (!type || !type.Columns) return null;
  const columns = [];
  for (let i = 0; i < type.Columns.Count; i += 1) {
    const c = type.Columns.getItem(i);
    columns.push({ name: c.Name, type: c.Type.Name });
  }
  return columns;
}

/**
 * Checks every text (or those `only` accepts); `override` may change what `collect` found.
 * Returns {checked, failures: [{what, file, problems}], texts}.
 */
function check(schemaDoc, { override, only } = {}) {
  const K = kusto();
  const collected = collect(schemaDoc);
  const { tables, functions, texts } = override ? override(collected) : collected;
  const state = globals(K, tables, functions);
  const failures = [];
  for (const item of texts) {
    if (only && !only(item)) continue;
    const problems = [];
    if (item.kind === 'error') {
      problems.push(item.message);
    } else if (item.kind === 'transform') {
      // A transform sees one table, `source`, with the stream's columns.
      const sourceState = globals(K, { source: item.source }, []);
      const { code, found } = diagnose(K, sourceState, item.text);
      problems.push(...found.map((d) => `${d.at} ${d.severity} ${d.code}: ${d.message}`));
      problems.push(...transformViolations(K, code));
      const got = resultColumns(code);
      const want = item.output.map((c) => ({ name: c.name, type: kustoType(c.type) }));
      const key = (cols) => JSON.stringify([...cols].sort((a, b) => a.name.localeCompare(b.name)));
      if (!got || key(got) !== key(want)) {
        problems.push(`output columns ${JSON.stringify(got)} are not the table's ${JSON.stringify(want)}`);
      }
    } else {
      const { found } = diagnose(K, state, (item.prefix || '') + item.text);
      const offset = (item.prefix || '').split('\n').length - 1;
      problems.push(...found.map((d) => {
        const [line, col] = d.at.split(':').map(Number);
        return `${line - offset}:${col} ${d.severity} ${d.code}: ${d.message}`;
      }));
      if (item.kind === 'rule' && !problems.length) {
        const { code } = diagnose(K, state, item.text);
        const columns = (resultColumns(code) || []).map((c) => c.name);
        for (const mapping of item.rule.entityMappings) {
          for (const field of mapping.fieldMappings) {
            if (!columns.includes(field.columnName)) problems.push(`entity mapping column ${field.columnName} is not in the result`);
          }
        }
        for (const column of Object.values(item.rule.customDetails || {})) {
          if (!columns.includes(column)) problems.push(`custom detail column ${column} is not in the result`);
        }
        if (!columns.includes('TimeGenerated')) problems.push('the result has no TimeGenerated');
      }
    }
    if (problems.length) failures.push({ what: item.what, file: item.file, problems });
  }
  return { checked: texts.length, failures, texts };
}

module.exports = { ROOT, SENTINEL, kusto, collect, check, schemaText, splitParameters, TRANSFORM_FUNCTIONS, TRANSFORM_OPERATORS };
