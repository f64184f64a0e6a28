#!/usr/bin/env node
// Usage: node scripts/kql/check.js <schema.json from `logrelay schema`>
// Analyses every KQL text the project ships (DCR transforms, parsers, analytic rules, workbook
// queries) with Microsoft's Kusto language service against the declared tables; exits 1 on any
// error or warning, on a transform outside the transformation-KQL subset, or on an entity
// mapping that names a column the rule does not return.
'use strict';

const fs = require('fs');
const { check } = require('./lib');

const file = process.argv[2];
if (!file) {
  console.error('usage: check.js <schema.json>');
  process.exit(2);
}
const schemaDoc = JSON.parse(fs.readFileSync(file, 'utf8'));
const { checked, failures, texts } = check(schemaDoc);
for (const failure of failures) {
  console.error(`check-kql: ${failure.what}${failure.file ? ` (${failure.file})` : ''}:`);
  for (const problem of failure.problems) console.error(`  ${problem}`);
}
const kinds = {};
for (const t of texts) kinds[t.kind] = (kinds[t.kind] || 0) + 1;
const summary = Object.entries(kinds).map(([k, n]) => `${n} ${k}`).join(', ');
if (failures.length) {
  console.error(`check-kql: ${failures.length} of ${checked} KQL texts have problems`);
  process.exit(1);
}
console.log(`check-kql: ${checked} KQL texts (${summary}) analysed against ${schemaDoc.table} (from logrelay schema) and the solution table: no errors or warnings`);
