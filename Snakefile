# persona-em: does Constitutional-AI persona training protect a model from
# emergent misalignment? One DAG over model x persona x EM dataset.
#
# With no --configfile, the embedded offline default (config/offline.yaml) runs;
# the full study is `--configfile config/config.yaml` (the leonardo profile sets it).
from snakemake.utils import min_version

min_version("9.10")


if not workflow.overwrite_configfiles:

    configfile: "config/offline.yaml"


include: "rules/common.smk"
include: "rules/models.smk"
include: "rules/persona.smk"
include: "rules/em.smk"
include: "rules/sampling.smk"
include: "rules/judging.smk"
include: "rules/stats.smk"
include: "rules/first_study.smk"
include: "rules/h4.smk"
include: "rules/h3.smk"
include: "rules/self_knowledge.smk"
# Last: where rules run on a cluster follows from the resources they declare.
include: "rules/cluster.smk"


rule all:
    default_target: True
    input:
        final_targets,
