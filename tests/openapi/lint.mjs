// Lints an OpenAPI document with @readme/openapi-parser (tests/npm, pinned):
// the OpenAPI 3.1 schema plus its semantic checks (path parameters declared,
// unique operationIds, $refs that resolve). The openapi suite
// (tests/api/test_openapi.c) runs it on docs/openapi.json and on a broken
// copy, which must fail.
//
//   node tests/openapi/lint.mjs FILE
//
// Exit 0 and "valid: TITLE VERSION, N paths" when the document is valid;
// exit 1 with the validator's errors on stderr when it is not.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '..', 'npm', 'package.json'));
const { validate } = await import(require.resolve('@readme/openapi-parser'));

const file = process.argv[2];
if (!file) {
  console.error('usage: node tests/openapi/lint.mjs FILE');
  process.exit(2);
}
const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
const paths = Object.keys(doc.paths ?? {}).length;
const result = await validate(doc, { validate: { errors: { colorize: false } } });
if (!result.valid) {
  console.error(JSON.stringify(result.errors, null, 1));
  if (result.warnings?.length) console.error(JSON.stringify(result.warnings, null, 1));
  process.exit(1);
}
console.log(`valid: ${doc.info.title} ${doc.info.version}, ${paths} paths`);
