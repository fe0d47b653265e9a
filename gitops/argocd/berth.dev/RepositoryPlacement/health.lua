-- Argo CD health of a berth.dev RepositoryPlacement, from the kstatus conditions the
-- berth operator writes (operator/berth_operator/placement/conditions.py):
--   being deleted, or status not yet written for
--     metadata.generation                                -> Progressing
--   Stalled=True   (a person must act)                   -> Degraded, its message
--   Reconciling=True (creating, migrating, queued, a failed
--     or rolled-back move waiting for its next attempt)  -> Progressing
--   Ready=True                                           -> Healthy, "Running on <machine>"
-- Runs without Lua's string, math and os libraries, as Argo CD runs checks installed
-- through argocd-cm. Keep argocd-cm.yaml's copy byte-identical (a test checks it).
local hs = {status = "Progressing", message = ""}

local function condition(conditions, kind)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function text(value, default)
  if value == nil or value == "" then
    return default
  end
  return tostring(value)
end

if obj.metadata.deletionTimestamp ~= nil then
  hs.message = "Pending deletion"
  return hs
end
local status = obj.status
local generation = obj.metadata.generation
if status == nil or status.observedGeneration == nil or status.observedGeneration < 0 then
  hs.message = "Waiting for the berth operator to pick up this placement"
  return hs
end
if generation ~= nil and status.observedGeneration ~= generation then
  hs.message = "Waiting for the berth operator to observe generation " .. generation ..
    " (status describes generation " .. status.observedGeneration .. ")"
  return hs
end

local stalled = condition(status.conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = text(stalled.message, text(stalled.reason, "Stalled"))
  return hs
end

local reconciling = condition(status.conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  local migration = status.migration
  if migration ~= nil and migration.phase ~= nil then
    hs.message = "Migrating " .. text(migration.source, "?") .. " -> " ..
      text(migration.target, "?") .. ": " .. text(migration.phase, "?")
    -- The last transfer's progress stays in status.migration after it ends: show it only
    -- in the phase that transfers (bulk rounds in BulkSync, the final delta in Cutover).
    local progress = migration.progress
    local transferring = progress ~= nil and (
      (migration.phase == "BulkSync" and progress.label ~= "final") or
      (migration.phase == "Cutover" and progress.label == "final"))
    if transferring and progress.bytes_total ~= nil and progress.bytes_total > 0 and
        progress.bytes_done ~= nil then
      local percent = progress.bytes_done * 100 / progress.bytes_total
      percent = percent - percent % 1
      hs.message = hs.message .. " (" .. text(progress.label, "transfer") .. " " .. percent .. "%)"
    end
    if migration.id ~= nil then
      hs.message = hs.message .. "; migration " .. migration.id
    end
  elseif reconciling.reason == "Failed" or reconciling.reason == "RolledBack" then
    -- Not Degraded: the operator retries by itself; Stalled=True follows if retries run out.
    hs.message = "Will retry: " .. text(reconciling.message, reconciling.reason)
  else
    hs.message = text(reconciling.reason, "Reconciling") .. ": " ..
      text(reconciling.message, "the berth operator is working on it")
  end
  return hs
end

local ready = condition(status.conditions, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = "Running on " .. text(status.currentMachine, "?")
  return hs
end
if ready ~= nil then
  hs.message = text(ready.reason, "NotReady") .. ": " .. text(ready.message, "not ready")
  return hs
end
hs.message = "Waiting for the berth operator to report conditions"
return hs
