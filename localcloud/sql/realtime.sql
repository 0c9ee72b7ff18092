-- helix-local-cloud's change capture for its Realtime stand-in. NOT a migration: Supabase's
-- Realtime reads the write-ahead log; this throwaway database instead gets an AFTER trigger on
-- every table of the `supabase_realtime` publication (cloud_commands and cloud_pairings) that
-- sends each row change on the NOTIFY channel `helix_localcloud_changes`, which the binary
-- LISTENs to. Applied after the migrations, to the local cloud's database only.
--
-- One notification per row change, delivered at commit, in commit order:
--   {"n", "schema", "table", "type": INSERT|UPDATE|DELETE, "commit_timestamp", "user_id",
--    "record", "old_record", "errors"}
-- `record` is the new row (INSERT, UPDATE), `old_record` the old row's primary key (UPDATE,
-- DELETE; what Realtime sends for tables with the default replica identity), `user_id` the
-- row's owner (the stand-in delivers only to that user's subscribers, as RLS would).
--
-- A NOTIFY payload must be under 8000 bytes, and envelope columns hold up to 1.5 MB. A change
-- that does not fit carries, like Realtime's answer to records over its limit, only the columns
-- whose value is at most 64 bytes long (ids, hub ids, status, times, last_seq) and
-- `errors: ["Error 413: Payload Too Large"]`; the large columns (envelope, prompt, request,
-- answer, reason) are left out. Realtime is a wake-up here: read the row for its content.

create schema helix_localcloud;
revoke all on schema helix_localcloud from public;

-- Makes every payload distinct: NOTIFY folds identical payloads of one transaction.
create sequence helix_localcloud.change_seq;

create function helix_localcloud.notify_change() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  v_new jsonb := case when tg_op in ('INSERT', 'UPDATE') then to_jsonb(new) end;
  v_old jsonb := case when tg_op in ('UPDATE', 'DELETE') then to_jsonb(old) end;
  v_keys text[];
  v_old_key jsonb;
  v_msg jsonb;
begin
  select coalesce(array_agg(a.attname::text), '{}') into v_keys
    from pg_catalog.pg_index i
    join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
   where i.indrelid = tg_relid and i.indisprimary;
  if v_old is not null then
    select coalesce(jsonb_object_agg(k, v_old -> k), '{}') into v_old_key
      from unnest(v_keys) k;
  end if;
  v_msg := jsonb_build_object(
    'n', nextval('helix_localcloud.change_seq'),
    'schema', tg_table_schema, 'table', tg_table_name, 'type', tg_op,
    'commit_timestamp', to_char(now() at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    'user_id', coalesce(v_new, v_old) ->> 'user_id',
    'record', v_new, 'old_record', v_old_key, 'errors', null);
  if octet_length(v_msg::text) > 7800 then
    v_msg := v_msg
      || jsonb_build_object('record',
           (select coalesce(jsonb_object_agg(e.key, e.value), '{}')
              from jsonb_each(v_new) e
             where octet_length(coalesce(e.value #>> '{}', '')) <= 64))
      || jsonb_build_object('errors', jsonb_build_array('Error 413: Payload Too Large'));
  end if;
  if octet_length(v_msg::text) > 7800 then
    -- Still too long (a table with very many columns): the key and the owner only.
    v_msg := v_msg || jsonb_build_object('record',
      (select coalesce(jsonb_object_agg(k, v_new -> k), '{}')
         from unnest(v_keys || array['user_id']) k where v_new ? k));
  end if;
  perform pg_notify('helix_localcloud_changes', v_msg::text);
  return null;
end $$;
revoke execute on function helix_localcloud.notify_change() from public;

do $$
declare
  t record;
begin
  for t in select schemaname, tablename from pg_catalog.pg_publication_tables
            where pubname = 'supabase_realtime' loop
    execute format(
      'create trigger zz_helix_localcloud_notify after insert or update or delete on %I.%I '
      'for each row execute function helix_localcloud.notify_change()',
      t.schemaname, t.tablename);
  end loop;
end $$;
