// Parse an AsyncAPI document with @asyncapi/parser (the official parser: schema and spec
// rules) and print its diagnostics as JSON lines; exit 1 when any is an error.
// usage: node check-asyncapi.mjs [path, default ../../asyncapi.yaml]
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { Parser } from "@asyncapi/parser";

const path = process.argv[2] ?? fileURLToPath(new URL("../../asyncapi.yaml", import.meta.url));
const { document, diagnostics } = await new Parser().parse(await readFile(path, "utf8"));
const severity = ["error", "warning", "info", "hint"];
for (const d of diagnostics) {
  console.log(JSON.stringify({ severity: severity[d.severity], code: d.code,
                               message: d.message, path: d.path.join(".") }));
}
process.exit(document && !diagnostics.some((d) => d.severity === 0) ? 0 : 1);
