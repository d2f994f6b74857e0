// Parse AsyncAPI documents with the official parser and its default ruleset, and report
// every diagnostic of severity error or warning, one line each:
//   <file>: <severity> <rule> at <path>: <message>
// Errors and warnings both count as problems: the documents have none, so a new one is a
// regression to look at (or a new rule of a parser update, to fix or to decide about).
//
//   node validate.mjs FILE...  parses the files; exits 1 if any has a problem, else 0.
//   node validate.mjs --stdin  reads lines of tab-separated file names; after each line's
//                              reports, prints "done <problems>"; ends at end of input.
//                              Tests keep one process for all their documents: loading
//                              the parser costs a second, a document a tenth of one.
import { readFile } from "node:fs/promises";
import { createInterface } from "node:readline";
import { Parser } from "@asyncapi/parser";

// Spectral's DiagnosticSeverity: 0 error, 1 warning, 2 information, 3 hint.
const SEVERITIES = ["error", "warning"];
const parser = new Parser();

async function problems(file) {
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
    return 1;
  }
  return reported.length;
}

async function all(files) {
  let found = 0;
  for (const file of files) {
    try {
      found += await problems(file);
    } catch (error) {
      console.log(`${file}: error: ${error.message}`);
      found += 1;
    }
  }
  return found;
}

const args = process.argv.slice(2);
if (args.length === 1 && args[0] === "--stdin") {
  for await (const line of createInterface({ input: process.stdin })) {
    const files = line.split("\t").filter((file) => file !== "");
    console.log(`done ${await all(files)}`);
  }
} else if (args.length > 0 && !args.includes("--stdin")) {
  const found = await all(args);
  console.log(`${args.length} document(s), ${found} problem(s)`);
  process.exit(found === 0 ? 0 : 1);
} else {
  console.error("usage: node validate.mjs FILE... | node validate.mjs --stdin");
  process.exit(2);
}
