-- Helix Mesh: the cap of 64 pending commands per account counts only commands that can still
-- run. A command that expired while its hub was away stays `pending` until the hub's next
-- claim marks it `expired`; until then it held a place, so an account whose hub had been off
-- for a day could send nothing until the hub came back.

create or replace function helix_private.cloud_command_insert() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  new.created_at := now();
  -- One insert at a time per user, so the cap holds under concurrency (as for hubs).
  if new.status = 'pending' then
    perform pg_advisory_xact_lock(hashtext('helix cloud_commands ' || new.user_id::text));
  end if;
  if new.status = 'pending' and (select count(*) from public.cloud_commands
       where user_id = new.user_id and status = 'pending' and expires_at > now()) >= 64 then
    raise exception 'this account already has 64 commands waiting for a hub'
      using errcode = '54000', hint = 'wait for the hub to take them, or cancel some';
  end if;
  return new;
end $$;
revoke execute on function helix_private.cloud_command_insert() from public;
