{{/* Names and labels of the Nexus chart. */}}
{{- define "nexus.fullname" -}}
{{- printf "%s-nexus" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "nexus.labels" -}}
app.kubernetes.io/name: nexus
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "nexus.selector" -}}
app.kubernetes.io/name: nexus
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end -}}

{{- define "nexus.postgres" -}}
{{- hasPrefix "postgres" .Values.store -}}
{{- end -}}

{{/*
One live node per SQLite store: refuse more than one replica, or autoscaling, on it.
*/}}
{{- define "nexus.guard" -}}
{{- if and (not (hasPrefix "postgres" .Values.store)) (or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled) -}}
{{- fail "nexus: more than one replica (or autoscaling) needs a PostgreSQL store; SQLite allows one live node per store file (set store: postgres://...)" -}}
{{- end -}}
{{- end -}}

{{/* nexus.yaml: the listeners, the store and Redis from values, then `config`. */}}
{{- define "nexus.config" -}}
{{- $base := dict "version" 1 "proxy" (dict "listen" (printf "0.0.0.0:%d" (int .Values.service.proxyPort)) "public_url" .Values.publicUrl) "admin" (dict "listen" (printf "0.0.0.0:%d" (int .Values.service.adminPort))) "store" .Values.store "master_key_file" "/var/lib/nexus/.nexus/master.key" -}}
{{- if .Values.redis.url -}}
{{- $_ := set $base "redis" (dict "url" .Values.redis.url "key_prefix" .Values.redis.keyPrefix) -}}
{{- end -}}
{{- toYaml (merge $base .Values.config) -}}
{{- end -}}
