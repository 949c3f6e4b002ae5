/**
 * `npm run lab [-- extra Jupyter options]`: open the notebooks in JupyterLab where it is installed,
 * else in Jupyter Notebook, with the project-local tslab kernel on JUPYTER_PATH.
 */
import { spawn, spawnSync } from "node:child_process";
import { join } from "node:path";
import { jupyterEnv, readSetup, ROOT } from "./lib/notebooks.js";

const setup = readSetup();
const hasLab = spawnSync(setup.python, ["-c", "import jupyterlab"], { stdio: "ignore" }).status === 0;
const app = hasLab ? "jupyterlab" : "notebook";
const rootOption = hasLab ? "--ServerApp.root_dir" : "--NotebookApp.notebook_dir";
const args = ["-m", app, `${rootOption}=${join(ROOT, "notebooks")}`, ...process.argv.slice(2)];
// Jupyter refuses to start as root without this; containers and CI machines often run as root.
if (process.getuid?.() === 0 && !args.includes("--allow-root")) args.push("--allow-root");
console.log(`Starting ${hasLab ? "JupyterLab" : "Jupyter Notebook (JupyterLab is not installed: pip install jupyterlab)"} with the tslab kernel from ${setup.jupyterPath}`);
const child = spawn(setup.python, args, { cwd: ROOT, env: jupyterEnv(setup), stdio: "inherit" });
for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => child.kill(sig));
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
