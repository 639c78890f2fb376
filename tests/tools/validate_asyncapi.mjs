// Validates an AsyncAPI document with the reference parser; exits non-zero on any error.
import { Parser, fromFile } from '@asyncapi/parser';
const parser = new Parser();
const { document, diagnostics } = await fromFile(parser, process.argv[2]).parse();
const errors = diagnostics.filter(d => d.severity === 0);
for (const d of diagnostics) console.log(JSON.stringify({severity: d.severity, code: d.code, message: d.message, path: d.path}));
if (!document || errors.length) { process.exit(1); }
console.log("VALID", document.allMessages().length);
