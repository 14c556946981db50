{{/* Names */}}
{{- define "cdcd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cdcd.fullname" -}}
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

{{/* Name of a per-source object; StatefulSet pod names add "-0" and a controller hash label, so
     keep it within 52 characters. */}}
{{- define "cdcd.sourceName" -}}
{{- printf "%s-%s" (include "cdcd.fullname" .root) .source.name | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{- define "cdcd.sinkName" -}}
{{- printf "%s-sink" (include "cdcd.fullname" .) | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{- define "cdcd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels */}}
{{- define "cdcd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cdcd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cdcd.labels" -}}
helm.sh/chart: {{ include "cdcd.chart" . }}
{{ include "cdcd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cdcd
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Images */}}
{{- define "cdcd.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "cdcd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cdcd.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "cdcd.sinkServiceAccountName" -}}
{{- if .Values.sink.serviceAccount.create -}}
{{- default (include "cdcd.sinkName" .) .Values.sink.serviceAccount.name -}}
{{- else if .Values.sink.serviceAccount.name -}}
{{- .Values.sink.serviceAccount.name -}}
{{- else -}}
{{- include "cdcd.serviceAccountName" . -}}
{{- end -}}
{{- end -}}

{{/* The mount point of secret files. */}}
{{- define "cdcd.secretsDir" -}}/run/secrets/cdcd{{- end -}}

{{/*
cdcd.effectiveSecrets: the top-level `secrets` with a workload's overrides; csi.objects are the
global ones followed by the workload's. Returns YAML (use fromYaml).
  args: dict "root" $ "secrets" <workload secrets map or nil>
*/}}
{{- define "cdcd.effectiveSecrets" -}}
{{- $global := deepCopy .root.Values.secrets -}}
{{- $own := deepCopy (.secrets | default dict) -}}
{{- $objects := concat ($global.csi.objects | default list) ((($own.csi | default dict).objects) | default list) -}}
{{- $merged := mergeOverwrite $global $own -}}
{{- $_ := set $merged.csi "objects" $objects -}}
{{- toYaml $merged -}}
{{- end -}}

{{/* "true" when the effective secrets mount a volume. args: the effective secrets map */}}
{{- define "cdcd.secretsMounted" -}}
{{- if or .csi.enabled .existingSecret -}}true{{- end -}}
{{- end -}}

{{/*
cdcd.config: the workload's cdcd config as a map, in YAML (use fromYaml).
  args: dict "root" $ "config" <workload config> "secrets" <effective secrets> "component" capture|sink
*/}}
{{- define "cdcd.config" -}}
{{- $root := .root -}}
{{- $cfg := mergeOverwrite (deepCopy ($root.Values.config | default dict)) (deepCopy (.config | default dict)) -}}
{{- $forced := dict "metrics" (dict "listen" (printf "0.0.0.0:%d" (int $root.Values.metrics.port))) -}}
{{- if include "cdcd.secretsMounted" .secrets -}}
{{- $dir := include "cdcd.secretsDir" $root -}}
{{- if and (eq .component "capture") .secrets.sourcePasswordKey -}}
{{- $_ := set $forced "source" (dict "password_file" (printf "%s/%s" $dir .secrets.sourcePasswordKey)) -}}
{{- end -}}
{{- if .secrets.maskingKeyKey -}}
{{- $_ := set $forced "masking" (dict "hmac_key_file" (printf "%s/%s" $dir .secrets.maskingKeyKey)) -}}
{{- end -}}
{{- end -}}
{{- toYaml (mergeOverwrite $cfg $forced) -}}
{{- end -}}

{{/*
TOML rendering. Helm's toToml writes every number from a values file as a float (server_id =
52416.0), which cdcd's integer settings refuse; these templates write integral numbers as TOML
integers, strings with JSON escapes (valid TOML basic strings), maps as tables and lists of maps as
arrays of tables.
*/}}
{{- define "cdcd.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{- define "cdcd.toml.isTableArray" -}}
{{- if and (kindIs "slice" .) (gt (len .) 0) -}}
{{- $all := true -}}
{{- range . -}}{{- if not (kindIs "map" .) -}}{{- $all = false -}}{{- end -}}{{- end -}}
{{- if $all -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{- define "cdcd.toml.value" -}}
{{- $v := . -}}
{{- if kindIs "string" $v -}}{{ toJson $v }}
{{- else if kindIs "bool" $v -}}{{ $v }}
{{- else if kindIs "float64" $v -}}
{{- if eq (float64 (int64 $v)) $v -}}{{ int64 $v }}{{- else -}}{{ $v }}{{- end -}}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) (kindIs "int32" $v) (kindIs "uint64" $v) -}}{{ $v }}
{{- else if kindIs "slice" $v -}}
[{{- range $i, $e := $v -}}{{- if $i }}, {{ end -}}{{- include "cdcd.toml.value" $e -}}{{- end -}}]
{{- else if kindIs "map" $v -}}
{ {{- range $i, $k := keys $v | sortAlpha -}}{{- if $i }},{{ end }} {{ include "cdcd.toml.key" $k }} = {{ include "cdcd.toml.value" (get $v $k) }}{{- end }} }
{{- else -}}
{{- fail (printf "config: cannot write a %s value as TOML" (kindOf $v)) -}}
{{- end -}}
{{- end -}}

{{/* args: dict "t" <map> "path" <dotted path of the table, "" at the top> */}}
{{- define "cdcd.toml.table" -}}
{{- $t := .t -}}
{{- $path := .path -}}
{{- range $k := keys $t | sortAlpha -}}
{{- $v := get $t $k -}}
{{- if not (or (kindIs "invalid" $v) (kindIs "map" $v) (include "cdcd.toml.isTableArray" $v)) }}
{{ include "cdcd.toml.key" $k }} = {{ include "cdcd.toml.value" $v }}
{{- end -}}
{{- end -}}
{{- range $k := keys $t | sortAlpha -}}
{{- $v := get $t $k -}}
{{- $p := include "cdcd.toml.key" $k -}}
{{- if $path -}}{{- $p = printf "%s.%s" $path $p -}}{{- end -}}
{{- if kindIs "map" $v }}

[{{ $p }}]
{{- include "cdcd.toml.table" (dict "t" $v "path" $p) -}}
{{- else if include "cdcd.toml.isTableArray" $v -}}
{{- range $e := $v }}

[[{{ $p }}]]
{{- include "cdcd.toml.table" (dict "t" $e "path" $p) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "cdcd.toml" -}}
# Rendered by the cdcd Helm chart from its values; edit the values, not this file.
{{- include "cdcd.toml.table" (dict "t" . "path" "") }}
{{ end -}}

{{/* "true" when a lake or checkpoint location is on the local filesystem (file:// URL or path) */}}
{{- define "cdcd.isLocalUrl" -}}
{{- if not (hasPrefix "s3://" (toString .)) -}}true{{- end -}}
{{- end -}}

{{/*
cdcd.checkState: refuse values that would lose the checkpoint on a restart.
  args: dict "root" $ "config" <effective config map> "name" <source name>
*/}}
{{- define "cdcd.checkState" -}}
{{- if not .root.Values.capture.persistence.enabled -}}
{{- $lake := (get (.config.lake | default dict) "url") | default "lake" -}}
{{- $checkpoint := get (.config.checkpoint | default dict) "url" -}}
{{- if $checkpoint -}}
{{- if include "cdcd.isLocalUrl" $checkpoint -}}
{{- fail (printf "source %q: checkpoint.url %s is a local file but capture.persistence.enabled is false: the checkpoint would be lost on every restart (enable persistence or use an s3:// checkpoint)" .name $checkpoint) -}}
{{- end -}}
{{- else if include "cdcd.isLocalUrl" $lake -}}
{{- fail (printf "source %q: the lake (and with it the checkpoint) is local (%s) but capture.persistence.enabled is false: enable persistence, or put the lake and checkpoint on s3://" .name $lake) -}}
{{- end -}}
{{- if include "cdcd.isLocalUrl" $lake -}}
{{- fail (printf "source %q: lake.url %s is local but capture.persistence.enabled is false: the lake would be lost on every restart" .name $lake) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
cdcd.pod: the pod spec shared by captures and the sink.
  args: dict "root" $ "component" capture|sink "name" <object name> "args" <list>
             "secrets" <effective secrets> "workload" <.Values.capture or .Values.sink>
             "serviceAccountName" <name> "stateVolume" <volume map without name>
             "oneShot" <true for a run-to-completion pod: no ports, no probes>
*/}}
{{- define "cdcd.podSpec" -}}
{{- $root := .root -}}
{{- $w := .workload -}}
serviceAccountName: {{ .serviceAccountName }}
automountServiceAccountToken: false
enableServiceLinks: false
terminationGracePeriodSeconds: {{ $w.terminationGracePeriodSeconds }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $w.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
containers:
  - name: cdcd
    image: {{ include "cdcd.image" $root }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    args:
      {{- toYaml .args | nindent 6 }}
    {{- if not .oneShot }}
    ports:
      - name: metrics
        containerPort: {{ $root.Values.metrics.port }}
        protocol: TCP
    {{- end }}
    {{- with $w.extraEnv }}
    env:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $w.extraEnvFrom }}
    envFrom:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- if not .oneShot }}
    startupProbe:
      httpGet:
        path: /healthz
        port: metrics
      {{- toYaml $root.Values.probes.startup | nindent 6 }}
    livenessProbe:
      httpGet:
        path: /healthz
        port: metrics
      {{- toYaml $root.Values.probes.liveness | nindent 6 }}
    readinessProbe:
      httpGet:
        path: /readyz
        port: metrics
      {{- toYaml $root.Values.probes.readiness | nindent 6 }}
    {{- end }}
    resources:
      {{- toYaml $w.resources | nindent 6 }}
    securityContext:
      {{- toYaml $root.Values.securityContext | nindent 6 }}
    volumeMounts:
      - name: config
        mountPath: /etc/cdcd
        readOnly: true
      - name: state
        mountPath: /var/lib/cdcd
      - name: tmp
        mountPath: /tmp
      {{- if include "cdcd.secretsMounted" .secrets }}
      - name: secrets
        mountPath: {{ include "cdcd.secretsDir" $root }}
        readOnly: true
      {{- end }}
      {{- with $w.extraVolumeMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
volumes:
  - name: config
    configMap:
      name: {{ .name }}
  {{- with .stateVolume }}
  - name: state
    {{- toYaml . | nindent 4 }}
  {{- end }}
  - name: tmp
    emptyDir:
      sizeLimit: 256Mi
  {{- if .secrets.csi.enabled }}
  - name: secrets
    csi:
      driver: secrets-store.csi.k8s.io
      readOnly: true
      volumeAttributes:
        secretProviderClass: {{ .secrets.csi.existingSecretProviderClass | default .name }}
  {{- else if .secrets.existingSecret }}
  - name: secrets
    secret:
      secretName: {{ .secrets.existingSecret }}
      defaultMode: 0440
  {{- end }}
  {{- with $w.extraVolumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $w.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $w.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $w.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
cdcd.secretProviderClass: a SecretProviderClass for one workload, when the chart creates it.
  args: dict "root" $ "name" <name> "secrets" <effective secrets> "labels" <extra labels YAML>
*/}}
{{- define "cdcd.secretProviderClass" -}}
{{- if and .secrets.csi.enabled (not .secrets.csi.existingSecretProviderClass) }}
{{- if not .secrets.csi.objects }}
{{- fail (printf "%s: secrets.csi.enabled needs secrets.csi.objects or secrets.csi.existingSecretProviderClass" .name) }}
{{- end }}
---
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "cdcd.labels" .root | nindent 4 }}
    {{- .labels | nindent 4 }}
spec:
  provider: aws
  parameters:
    objects: |
      {{- toYaml .secrets.csi.objects | nindent 6 }}
    {{- if .secrets.csi.usePodIdentity }}
    usePodIdentity: "true"
    {{- end }}
{{- end }}
{{- end -}}
