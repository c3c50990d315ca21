{{/* Name of the chart, overridable. */}}
{{- define "flint.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object name: the release name, plus the chart name unless the release name contains it. */}}
{{- define "flint.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "flint.operatorName" -}}{{ include "flint.fullname" . }}-operator{{- end -}}
{{- define "flint.gatewayName" -}}{{ include "flint.fullname" . }}-gateway{{- end -}}
{{- define "flint.controlSecretName" -}}{{ include "flint.fullname" . }}-control{{- end -}}
{{- define "flint.natsName" -}}{{ include "flint.fullname" . }}-nats{{- end -}}

{{/* Labels on every object. */}}
{{- define "flint.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "flint.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: flint
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of a component (operator or gateway); pass (dict "ctx" $ "component" "gateway"). */}}
{{- define "flint.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flint.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "flint.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The pod security context every Flint pod runs with. */}}
{{- define "flint.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsUser }}
fsGroup: {{ .Values.runAsUser }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The container security context every Flint container runs with. */}}
{{- define "flint.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Spread a component's replicas over nodes when no affinity is given. */}}
{{- define "flint.affinity" -}}
{{- if .affinity -}}
{{ toYaml .affinity }}
{{- else -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "flint.selectorLabels" (dict "ctx" .ctx "component" .component) | nindent 12 }}
{{- end -}}
{{- end -}}

{{/*
URL of the NATS server the gateway queues asynchronous invocations on: the
deployed one's Service, the given events.nats.url, or empty (no queue).
*/}}
{{- define "flint.natsUrl" -}}
{{- if .Values.events.nats.deploy -}}
nats://{{ include "flint.natsName" . }}.{{ .Release.Namespace }}.svc:4222
{{- else -}}
{{- .Values.events.nats.url -}}
{{- end -}}
{{- end -}}

{{/*
The Secret holding the NATS auth token (key `token`): the given
events.nats.auth.existingSecret, the chart's own for a deployed server, or
empty (an existing server used without a token).
*/}}
{{- define "flint.natsTokenSecret" -}}
{{- if .Values.events.nats.auth.existingSecret -}}
{{- .Values.events.nats.auth.existingSecret -}}
{{- else if .Values.events.nats.deploy -}}
{{- include "flint.natsName" . }}-auth
{{- end -}}
{{- end -}}

{{/*
Bytes the deployed NATS server's JetStream may store (max_file_store): 90%
of its volume, leaving room for the server's own files.
*/}}
{{- define "flint.natsStoreBytes" -}}
{{- div (mul (include "flint.bytes" .Values.events.nats.persistence.size | int64) 9) 10 -}}
{{- end -}}

{{/*
Bytes Flint's streams may hold together (the gateway's FLINT_NATS_MAX_BYTES):
events.nats.maxBytes, else 80% of a deployed server's volume, else 1Gi.
*/}}
{{- define "flint.natsMaxBytes" -}}
{{- $nats := .Values.events.nats -}}
{{- if $nats.maxBytes -}}
{{- include "flint.bytes" $nats.maxBytes -}}
{{- else if $nats.deploy -}}
{{- div (mul (include "flint.bytes" $nats.persistence.size | int64) 4) 5 -}}
{{- else -}}
1073741824
{{- end -}}
{{- end -}}

{{/* Whether to render the monitoring.coreos.com objects. */}}
{{- define "flint.monitoring" -}}
{{- $mode := .Values.monitoring.create -}}
{{- if or (eq $mode "always") (and (eq $mode "auto") (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1")) -}}
true
{{- end -}}
{{- end -}}

{{/*
Bytes of a Kubernetes memory or storage quantity (e.g. 256Mi, 1G, 0.5Gi, 10Gi, 268435456),
as an integer string; fails on a form it does not know.
*/}}
{{- define "flint.bytes" -}}
{{- $q := toString . -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $q -}}
{{- $suffix := trimPrefix $number $q -}}
{{- $units := dict "" 1 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "Pi" 1125899906842624 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "P" 1000000000000000 -}}
{{- if or (not $number) (not (hasKey $units $suffix)) -}}
{{- fail (printf "%q is not a memory quantity this chart understands (use a number with Ki, Mi, Gi, Ti, Pi, k, M, G, T or P)" $q) -}}
{{- end -}}
{{- mulf (float64 $number) (index $units $suffix) | int64 -}}
{{- end -}}

{{/*
The memory a gateway needs, in bytes: its memory budget
(gateway.memoryBudgetBytes, which bounds every revision's waiting requests,
asynchronous bodies and callbacks together), every open connection's read
buffer full (gateway.connections.max × gateway.maxBufferedBytes, outside the
budget), and 32Mi for the rest of the process (HEADROOM_BYTES in
runtime/src/budget.rs). docs/gateway.md, "Memory bounds".
*/}}
{{- define "flint.gatewayMemoryNeed" -}}
{{- $buffers := mul (int64 .Values.gateway.connections.max) (int64 .Values.gateway.maxBufferedBytes) -}}
{{- add 33554432 (int64 .Values.gateway.memoryBudgetBytes) $buffers -}}
{{- end -}}

{{/*
Checks between values that a JSON schema cannot express; each failure names
the values and says what to change.
*/}}
{{- define "flint.validate" -}}
{{- $le := .Values.operator.leaderElection -}}
{{- if ge (int $le.renewDeadlineSeconds) (int $le.leaseDurationSeconds) -}}
{{- fail (printf "operator.leaderElection.renewDeadlineSeconds (%d) must be less than leaseDurationSeconds (%d), so a leader steps down before another can take over" (int $le.renewDeadlineSeconds) (int $le.leaseDurationSeconds)) -}}
{{- end -}}
{{- if ge (int $le.retryPeriodSeconds) (int $le.renewDeadlineSeconds) -}}
{{- fail (printf "operator.leaderElection.retryPeriodSeconds (%d) must be less than renewDeadlineSeconds (%d), so the leader gets more than one attempt to renew" (int $le.retryPeriodSeconds) (int $le.renewDeadlineSeconds)) -}}
{{- end -}}
{{- $as := .Values.gateway.autoscaling -}}
{{- if and $as.enabled (gt (int $as.minReplicas) (int $as.maxReplicas)) -}}
{{- fail (printf "gateway.autoscaling.minReplicas (%d) must not exceed maxReplicas (%d)" (int $as.minReplicas) (int $as.maxReplicas)) -}}
{{- end -}}
{{- $pdb := .Values.gateway.podDisruptionBudget -}}
{{- $fewest := ternary $as.minReplicas .Values.gateway.replicas $as.enabled -}}
{{- if and $pdb.enabled (ge (int $pdb.minAvailable) (int $fewest)) -}}
{{- fail (printf "gateway.podDisruptionBudget.minAvailable (%d) must be less than the gateway's replicas (%d), or no node could ever be drained" (int $pdb.minAvailable) (int $fewest)) -}}
{{- end -}}
{{- if and .Values.events.nats.deploy .Values.events.nats.url -}}
{{- fail (printf "events.nats.url (%s) and events.nats.deploy=true are both set; set url to use an existing NATS server, or deploy=true to run one in the release, not both" .Values.events.nats.url) -}}
{{- end -}}
{{- if or .Values.events.nats.deploy .Values.events.nats.url -}}
{{- $maxBytes := include "flint.natsMaxBytes" . | int64 -}}
{{- if lt $maxBytes 4194304 -}}
{{- fail (printf "events.nats.maxBytes (%s) is below 4Mi: the streams must hold a few of the largest invocations" (toString .Values.events.nats.maxBytes)) -}}
{{- end -}}
{{- if and .Values.events.nats.deploy (gt $maxBytes (include "flint.natsStoreBytes" . | int64)) -}}
{{- fail (printf "events.nats.maxBytes (%s) exceeds the deployed server's JetStream store, 90%% of events.nats.persistence.size (%s): the streams could not be created. Lower maxBytes or raise the size" (toString .Values.events.nats.maxBytes) (toString .Values.events.nats.persistence.size)) -}}
{{- end -}}
{{- end -}}
{{- $np := .Values.networkPolicy -}}
{{- if and $np.enabled (eq .Values.autoscaler.metricsSource "prometheus") (not $np.metricsScrapers) -}}
{{- fail "autoscaler.metricsSource=prometheus with networkPolicy.enabled=true needs networkPolicy.metricsScrapers naming the Prometheus pods: the policies let nothing else reach the gateways' metrics, and the autoscaler would see no load" -}}
{{- end -}}
{{- with (.Values.gateway.resources.limits | default dict).memory -}}
{{- $limit := include "flint.bytes" . | int64 -}}
{{- $need := include "flint.gatewayMemoryNeed" $ | int64 -}}
{{- if lt $limit $need -}}
{{- fail (printf "gateway.resources.limits.memory (%s) is below what the gateway may hold, %d bytes (gateway.memoryBudgetBytes %d, plus gateway.connections.max %d × gateway.maxBufferedBytes %d of connection buffers, plus 32Mi for the rest of the process): a flood of waiting requests, asynchronous bodies or request heads could get the gateway OOM-killed. Raise the limit, or lower memoryBudgetBytes, connections.max or maxBufferedBytes" (toString .) $need (int64 $.Values.gateway.memoryBudgetBytes) (int64 $.Values.gateway.connections.max) (int64 $.Values.gateway.maxBufferedBytes)) -}}
{{- end -}}
{{- end -}}
{{- if eq (int .Values.gateway.port) (int .Values.gateway.adminPort) -}}
{{- fail (printf "gateway.port and gateway.adminPort are both %d; the data plane and the admin endpoints need different ports" (int .Values.gateway.port)) -}}
{{- end -}}
{{- end -}}

{{/* The control token's environment variable (operator and gateway). */}}
{{- define "flint.controlTokenEnv" -}}
- name: FLINT_CONTROL_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "flint.controlSecretName" . }}
      key: token
{{- end -}}
