// Parse each AsyncAPI document named on the command line with the official parser and
// its default ruleset. Prints every diagnostic of severity error or warning, one line
// each: "<file>: <severity> <rule> at <path>: <message>". Exits 1 when any document has
// an error or a warning, 2 on a usage error, 0 otherwise; the last line counts them.
import { readFile } from "node:fs/promises";
import { Parser } from "@asyncapi/parser";

// Spectral's DiagnosticSeverity: 0 error, 1 warning, 2 information, 3 hint.
const SEVERITIES = ["error", "warning"];

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node validate.mjs DOCUMENT...");
  process.exit(2);
}

const parser = new Parser();
let problems = 0;
for (const file of files) {
  const { document, diagnostics } = await parser.parse(await readFile(file, "utf8"), {
    source: file,
  });
  const reported = diagnostics.filter((d) => d.severity < SEVERITIES.length);
  for (const d of reported) {
    const where = d.path.length ? d.path.join("/") : "(document)";
    console.log(`${file}: ${SEVERITIES[d.severity]} ${d.code} at ${where}: ${d.message}`);
  }
  if (document === undefined && reported.length === 0) {
    console.log(`${file}: error: the parser returned no document`);
    problems += 1;
  }
  problems += reported.length;
}
console.log(`${files.length} document(s), ${problems} problem(s)`);
process.exit(problems === 0 ? 0 : 1);
