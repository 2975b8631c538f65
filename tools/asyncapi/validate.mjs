// Validates AsyncAPI documents with the official parser (@asyncapi/parser, the one `asyncapi validate`
// runs), for make check. Usage: node tools/asyncapi/validate.mjs FILE...
// Exit codes: 0 valid (no error and no warning), 1 a diagnostic of severity error or warning, 2 usage.
import { Parser, fromFile } from '@asyncapi/parser';

const SEVERITY = ['error', 'warning', 'info', 'hint'];
const files = process.argv.slice(2);
if (files.length === 0 || files.includes('--help')) {
  console.log('usage: node tools/asyncapi/validate.mjs FILE...  (exit 0 valid, 1 errors or warnings, 2 usage)');
  process.exit(files.length === 0 ? 2 : 0);
}
const parser = new Parser();
let failed = false;
for (const file of files) {
  const { document, diagnostics } = await fromFile(parser, file).parse();
  const counted = diagnostics.filter((d) => d.severity <= 1);
  for (const d of diagnostics) {
    console.log(`${file}: ${SEVERITY[d.severity]} ${d.code} at /${d.path.join('/')}: ${d.message}`);
  }
  if (document === undefined || counted.length > 0) {
    failed = true;
  } else {
    console.log(`${file}: valid AsyncAPI ${document.version()} (${diagnostics.length} info or hints)`);
  }
}
process.exit(failed ? 1 : 0);
