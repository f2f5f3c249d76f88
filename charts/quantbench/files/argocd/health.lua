-- Argo CD health check for quantbench.dev/QuantBenchmark, from the conditions the operator writes.
--   Progressing: the operator has not acted on this spec generation yet, or a run is in progress
--   Healthy:     the last run succeeded (every variant) and no figure regressed
--   Degraded:    the spec is invalid, the last run failed or lost variants, or a figure regressed
--   Suspended:   spec.suspend is true and no run is in progress
-- Install: argocd-cm key resource.customizations.health.quantbench.dev_QuantBenchmark (README: GitOps).
local hs = {}
local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the QuantBench operator"
  return hs
end
local conditions = {}
if status.conditions ~= nil then
  for _, c in ipairs(status.conditions) do
    conditions[c.type] = c
  end
end
local function is_true(kind)
  return conditions[kind] ~= nil and conditions[kind].status == "True"
end
local function message_of(kind)
  return conditions[kind] ~= nil and conditions[kind].message or ""
end
local generation = obj.metadata ~= nil and obj.metadata.generation or nil
local degraded = conditions["Degraded"]
if degraded ~= nil and degraded.status == "True" and degraded.reason == "InvalidSpec" then
  hs.status = "Degraded"
  hs.message = "invalid spec: " .. degraded.message
  return hs
end
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "spec generation " .. generation .. " is not acted on yet"
  return hs
end
if status.currentRun ~= nil or is_true("Progressing") then
  hs.status = "Progressing"
  hs.message = message_of("Progressing")
  return hs
end
if is_true("Regressed") then
  hs.status = "Degraded"
  hs.message = "regressed: " .. message_of("Regressed")
  return hs
end
if is_true("Degraded") then
  hs.status = "Degraded"
  hs.message = message_of("Degraded")
  return hs
end
local ready = conditions["Ready"]
if ready ~= nil and ready.status == "True" then
  if status.phase == "Suspended" then
    hs.status = "Suspended"
    hs.message = "spec.suspend is true; " .. ready.message
    return hs
  end
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end
if status.phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true"
  return hs
end
if ready ~= nil and ready.reason == "NoResultsYet" then
  hs.status = "Progressing"
  hs.message = ready.message
  return hs
end
hs.status = "Degraded"
hs.message = ready ~= nil and ready.message or "no run has finished"
return hs
