/** `cert-retriever-lab`: the lab platform's own entry (`cert-retriever-lab serve` is `cert-retriever lab serve`). */
import { main } from "./main.js";

process.exitCode = await main(["lab", ...process.argv.slice(2)]);
