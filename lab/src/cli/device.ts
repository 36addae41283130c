import { Command } from "commander";
import { setDevice } from "../server.js";
import { checkDeviceId, say, usage } from "./inputs.js";

/** `cert-retriever-lab device add|reset`: the lab's devices (EJBCA end entities). */
export function deviceCommand(): Command {
  const device = new Command("device").description("register lab devices (EJBCA end entities)");
  for (const action of ["add", "reset"] as const) {
    device
      .command(action)
      .description(
        action === "add"
          ? "register a device (end entity in NEW state, password 'dojot')"
          : "put a device back to NEW so it can be issued again",
      )
      .requiredOption("--dir <dir>", "the lab's directory")
      .argument("<id>", "device id")
      .action(async (id: string, flags: { dir: string }) => {
        await setDevice(flags.dir, checkDeviceId(id), action).catch((err: Error) => {
          throw usage(err.message);
        });
        say(`lab: device '${id}' ${action === "add" ? "registered" : "reset"} (NEW)`);
      });
  }
  return device;
}
