import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The directory of Hearth's package.json: the nearest one above this file that names `hearth`.
 * The same from `src/` (tests, tsx) and from the compiled `dist/` (chunks at any depth), so files
 * beside the code (package.json, web/dist) are found without counting `../`.
 */
export const PACKAGE_ROOT: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'hearth') return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json of hearth above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
})();
