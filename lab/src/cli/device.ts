import { Command } from "commander";
import { listDevices, setDevices } from "../server.js";
import { checkDeviceId, DEFAULT_DIR, say, usage } from "./inputs.js";

/** `cert-retriever-lab device add|reset|list`: the lab's devices (EJBCA end entities, which x509-identity-mgmt's binding checks too). */
export function deviceCommand(): Command {
  const device = new Command("device").description("the lab's devices (EJBCA end entities): add, reset, list");
  for (const action of ["add", "reset"] as const) {
    device
      .command(action)
      .description(
        action === "add"
          ? "register devices (end entities in NEW state, password 'dojot'), as dojot's device manager creates them"
          : "put devices back to NEW so that they can be issued again",
      )
      .option("--dir <dir>", "the lab's directory", DEFAULT_DIR)
      .argument("<ids...>", "device ids")
      .action(async (ids: string[], flags: { dir: string }) => {
        await setDevices(flags.dir, ids.map(checkDeviceId), action).catch((err: Error) => {
          throw usage(err.message);
        });
        for (const id of ids) say(`lab: device '${id}' ${action === "add" ? "registered" : "reset"} (NEW)`);
      });
  }
  device
    .command("list")
    .description(
      "print the lab's devices on stdout, one a line: id, end-entity status, certificates EJBCA-REST issued, x509-identity-mgmt certificates bound",
    )
    .option("--dir <dir>", "the lab's directory", DEFAULT_DIR)
    .action(async (flags: { dir: string }) => {
      const devices = await listDevices(flags.dir).catch((err: Error) => {
        throw usage(err.message);
      });
      if (devices.length === 0)
        say(`lab: no devices in ${flags.dir} (add one with 'cert-retriever-lab device add ID')`);
      const width = Math.max(0, ...devices.map((d) => d.id.length));
      for (const d of devices)
        process.stdout.write(`${d.id.padEnd(width)}  ${d.status.padEnd(9)}  issued ${d.issued}  bound ${d.bound}\n`);
    });
  return device;
}
