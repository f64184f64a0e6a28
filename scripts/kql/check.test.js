// Negative tests of the KQL checker (node --test): each injected mistake must be reported, so a
// green check means the analysis ran against the declared schema and did not merely parse.
// Run by scripts/check-kql.sh with LOGRELAY_SCHEMA=<output of `logrelay schema`>.
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const { check } = require('./lib');

const schemaFile = process.env.LOGRELAY_SCHEMA;
assert.ok(schemaFile, 'set LOGRELAY_SCHEMA to the output of `logrelay schema`');
const schemaDoc = JSON.parse(fs.readFileSync(schemaFile, 'utf8'));

/** Runs the checker with `mutate` applied to the first text of `kind` whose text has `from`. */
function checkWith(kind, from, to) {
  let hit = null;
  const override = (collected) => {
    const texts = collected.texts.map((t) => {
      if (!hit && t.kind === kind && t.text.includes(from)) {
        hit = t.what;
        return { ...t, text: t.text.replace(from, to), mutated: true };
      }
      return t;
    });
    return { ...collected, texts };
  };
  const result = check(schemaDoc, { override, only: (t) => t.mutated });
  assert.ok(hit, `no ${kind} text contains ${from}`);
  return { hit, failures: result.failures };
}

function problemsOf(failures, what) {
  return failures.filter((f) => f.what === what).flatMap((f) => f.problems);
}

test('every shipped KQL text passes as written', () => {
  const { failures, checked } = check(schemaDoc);
  assert.deepStrictEqual(failures, []);
  assert.ok(checked >= 20, `only ${checked} texts found`);
});

test('an unknown column in an analytic rule fails the check', () => {
  const { hit, failures } = checkWith('rule', '| where AuditEvent == "login_failure"', '| where AuditEvnt == "login_failure"');
  const problems = problemsOf(failures, hit);
  assert.ok(problems.some((p) => p.includes("'AuditEvnt' does not refer to any known column")), problems.join('\n'));
});

test('an unknown column in the parser function fails the check', () => {
  const { hit, failures } = checkWith('function', 'RemoteAddress = remote_address', 'RemoteAddress = remote_adress');
  assert.ok(problemsOf(failures, hit).some((p) => p.includes("'remote_adress'")));
});

test('an unknown column in a workbook query fails the check', () => {
  const { hit, failures } = checkWith('workbook', 'by Username', 'by UserName');
  assert.ok(problemsOf(failures, hit).some((p) => p.includes("'UserName'")));
});

test('an unknown source column in the solution-compatible transform fails the check', () => {
  const { hit, failures } = checkWith('transform', 'ClientVersion = client_version', 'ClientVersion = client_ver');
  assert.ok(problemsOf(failures, hit).some((p) => p.includes("'client_ver'")));
});

test('a transform that drops a table column fails the check', () => {
  const { hit, failures } = checkWith('transform', ', EventId', '');
  assert.ok(problemsOf(failures, hit).some((p) => p.startsWith('output columns')));
});

test('summarize in a transform breaks the transformation limits', () => {
  const { hit, failures } = checkWith('transform', '| project TimeGenerated,', '| summarize take_any(*) by EventId | project TimeGenerated,');
  const problems = problemsOf(failures, hit);
  assert.ok(problems.some((p) => p.includes('SummarizeOperator is not supported')), problems.join('\n'));
});

test('an unsupported function in a transform breaks the transformation limits', () => {
  const { hit, failures } = checkWith('transform', 'EventTime <= ago(-1d)', 'EventTime <= ago(-1d) and ipv4_is_private(remote_address) == false');
  assert.ok(problemsOf(failures, hit).some((p) => p.includes('ipv4_is_private() is not supported')));
});

test('an entity mapping on a column the rule does not return fails the check', () => {
  const override = (collected) => ({
    ...collected,
    texts: collected.texts.map((t) => (t.kind === 'rule' && t.rule.file === 'audit-sync-changed.kql'
      ? { ...t, text: t.text.replace('| project TimeGenerated, Username, RemoteAddress,', '| project TimeGenerated, Username,'), mutated: true }
      : t)),
  });
  const result = check(schemaDoc, { override, only: (t) => t.mutated });
  const problems = result.failures.flatMap((f) => f.problems);
  assert.ok(problems.some((p) => p.includes('entity mapping column RemoteAddress')), problems.join('\n'));
});
