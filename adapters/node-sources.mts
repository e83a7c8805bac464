/** The Python sources the web-standard driver runs, read from a checkout (Node's fs). */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

export const SOURCES = ["core", "adapters/__init__.py", "adapters/pyodide_bridge.py"];

export function pythonSources(root: string): Array<[string, Uint8Array]> {
  return SOURCES.flatMap((path): Array<[string, Uint8Array]> => {
    if (path.endsWith(".py")) return [[path, readFileSync(join(root, path))]];
    return readdirSync(join(root, path))
      .filter((name) => name.endsWith(".py"))
      .map((name) => [`${path}/${name}`, readFileSync(join(root, path, name))]);
  });
}
