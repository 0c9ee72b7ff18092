/**
 * What a hostile cloud can do: copy one command's stored event envelope into another
 * command's row (as the database owner, past the functions and policies).
 */
import { run, type LocalCloud } from "./harness";

export async function spliceEvent(cloud: LocalCloud, at: { from: string; to: string; seq: number }): Promise<void> {
  const sql = `update cloud_command_events set envelope = (select envelope from cloud_command_events where command_id = '${at.from}' and seq = ${at.seq}) where command_id = '${at.to}' and seq = ${at.seq}`;
  const done = await run("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", cloud.databaseUrl, "-c", sql]);
  if (done.code !== 0) throw new Error(`splicing: ${done.stderr}`);
}
