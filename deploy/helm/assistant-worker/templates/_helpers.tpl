{{/*
Helpers of the assistant-worker chart.  Names, labels, and the few values derived from the
worker's configuration (so that the probes, the autoscaler, the network policy and the
grace period follow config instead of repeating it).
*/}}

{{- define "aw.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "aw.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "aw.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aw.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end -}}

{{- define "aw.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "aw.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: assistant-worker
{{- end -}}

{{- define "aw.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "aw.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "aw.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* The worker's group id: config.kafka.group_id or the binary's default. */}}
{{- define "aw.groupId" -}}
{{- $k := .Values.config.kafka | default dict -}}
{{- $k.group_id | default "assistant-worker" -}}
{{- end -}}

{{- define "aw.requestsTopic" -}}
{{- $k := .Values.config.kafka | default dict -}}
{{- $t := $k.topics | default dict -}}
{{- $t.requests | default "assistant.requests" -}}
{{- end -}}

{{/* terminationGracePeriodSeconds: the worker's shutdown grace (config.worker.shutdown_grace_ms,
default 30 s), then the last offset commit's
wait for the broker (10 s, worker/outbox/outbox.c FINAL_REPORTS_MS), then a margin.  SIGKILL
before the commit means the next owner answers those events again: still exactly once, but
redone work. */}}
{{- define "aw.terminationGrace" -}}
{{- $w := .Values.config.worker | default dict -}}
{{- $graceMs := $w.shutdown_grace_ms | default 30000 | int -}}
{{- add (div (add $graceMs 999) 1000) 10 (.Values.shutdown.marginSeconds | int) -}}
{{- end -}}

{{/* Whether an optional API is rendered: "true", "false" or "auto" (when the cluster serves
it; offline, `helm template --api-versions` tells). */}}
{{- define "aw.enabled" -}}
{{- $v := toString (index . 0) -}}
{{- if eq $v "true" -}}true
{{- else if and (eq $v "auto") (index . 1) -}}true
{{- end -}}
{{- end -}}

{{/* The autoscaler in use: keda, hpa or none. */}}
{{- define "aw.autoscaler" -}}
{{- $m := .Values.autoscaling.mode -}}
{{- if eq $m "auto" -}}
{{- if .Capabilities.APIVersions.Has "keda.sh/v1alpha1/ScaledObject" -}}keda{{- else -}}hpa{{- end -}}
{{- else if has $m (list "keda" "hpa" "none") -}}
{{- $m -}}
{{- else -}}
{{- fail (printf "autoscaling.mode: %q is not auto, keda, hpa or none" $m) -}}
{{- end -}}
{{- end -}}

{{/* The TCP ports of config.kafka.brokers ("host:port,host:port"), one per line. */}}
{{- define "aw.kafkaPorts" -}}
{{- $k := .Values.config.kafka | default dict -}}
{{- $seen := dict -}}
{{- range $b := splitList "," ($k.brokers | default "") -}}
{{- $p := regexFind "[0-9]+$" (trim $b) -}}
{{- if and $p (not (hasKey $seen $p)) -}}
{{- $_ := set $seen $p true -}}
{{ $p }}
{{ end -}}
{{- end -}}
{{- end -}}

{{/* The API's TCP port, from config.api.base_url (443 for https, 80 for http, unless given). */}}
{{- define "aw.apiPort" -}}
{{- $a := .Values.config.api | default dict -}}
{{- $u := urlParse ($a.base_url | default "https://api.openai.com/v1") -}}
{{- $p := regexFind ":[0-9]+$" $u.host | trimPrefix ":" -}}
{{- if $p -}}{{ $p }}{{- else if eq $u.scheme "http" -}}80{{- else -}}443{{- end -}}
{{- end -}}

{{- define "aw.redisPort" -}}
{{- $r := .Values.config.redis | default dict -}}
{{- $r.port | default 6379 | int -}}
{{- end -}}

{{/* Replica bounds of an autoscaler: 1 <= min <= max <= the requests topic's partitions. */}}
{{- define "aw.checkReplicaBounds" -}}
{{- $a := .Values.autoscaling -}}
{{- $min := $a.minReplicas | int -}}
{{- $max := $a.maxReplicas | int -}}
{{- $parts := $a.requestsTopicPartitions | int -}}
{{- if lt $min 1 -}}
{{- fail "autoscaling.minReplicas must be at least 1 (a fleet of 0 consumes no tool replies either)" -}}
{{- end -}}
{{- if gt $min $max -}}
{{- fail (printf "autoscaling.minReplicas %d exceeds maxReplicas %d" $min $max) -}}
{{- end -}}
{{- if gt $max $parts -}}
{{- fail (printf "autoscaling.maxReplicas %d exceeds autoscaling.requestsTopicPartitions %d: the extra workers would get no partition" $max $parts) -}}
{{- end -}}
{{- end -}}
