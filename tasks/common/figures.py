"""The figures and speed comparisons of a results table (its JSON as tasks/common/results.py writes it): each
table's curves and seconds-per-epoch bars, drawn when a table is published and by `make report`."""
from tasks.common.results import TABLES, markdown_table

METRIC_LABELS = dict(dev_acc="dev accuracy (%)", dev_f1="dev F1", valid_ppl="valid perplexity (log scale)",
                     dev_wer="dev WER (%)")
LOG_SCALE = {"valid_ppl"}
KIND_STYLE = dict(sru=("-", "Reds"), lstm=("--", "Blues"), cnn=(":", "Greens"))


def row_label(row, with_panel=False):
    """e.g. 'SRU 6x910', 'LSTM 2 +input feed', 'bi-SRU 12x75', with '[MR]' when rows span datasets."""
    label = ("bi-" if row.get("bidirectional") else "") + str(row["model"]).upper()
    if row.get("layers"):
        label += f" {row['layers']}" + (f"x{row['hidden']}" if row.get("hidden") else "")
    if row.get("input_feed"):
        label += " +input feed"
    if with_panel and row.get("dataset"):
        label += f" [{row['dataset']}]"
    return label


# row keys that tell repeats of one configuration apart, shown in the speed table where the rows differ in them
VARIANT_KEYS = (("seed", "seed {}"), ("lr", "lr {:g}"), ("forget_bias", "f-gate bias {:g}"))


def speed_rows(table):
    """Seconds per epoch side by side, and each row's speed-up over the LSTM row it is compared with
    (same dataset, directions and machine, i.e. CPU/GPU and thread count; the first LSTM row without input
    feeding, where the table has one). Rows on a machine with no such LSTM row get no speed-up."""
    rows = table["rows"]
    varying = [(k, f) for k, f in VARIANT_KEYS if len({str(r.get(k)) for r in rows}) > 1]
    several_machines = len({r.get("machine") for r in rows}) > 1
    out = []
    for r in rows:
        lstms = [x for x in rows if x["model"] == "lstm" and x.get("dataset") == r.get("dataset")
                 and bool(x.get("bidirectional")) == bool(r.get("bidirectional")) and x.get("machine") == r.get("machine")]
        base = next((x for x in lstms if not x.get("input_feed")), lstms[0] if lstms else None)
        s = r.get("sec_per_epoch")
        label = row_label(r, with_panel=True)
        extra = [f.format(r[k]) for k, f in varying if r.get(k) is not None]
        label += f" ({', '.join(extra)})" if extra else ""
        if several_machines and r.get("machine"):
            label += f" [{r['machine']}]"
        out.append(dict(label=label, sec_per_epoch=s, rnn_sec_per_epoch=r.get("rnn_sec_per_epoch"),
                        full_epoch=r.get("full_epoch_sec_extrapolated"),
                        vs_lstm=base["sec_per_epoch"] / s if base and s and r is not base else None,
                        lstm=row_label(base, with_panel=True) if base else None))
    return out


def speed_markdown(table):
    rows = speed_rows(table)
    columns = [("row", "label", None), ("s/epoch", "sec_per_epoch", ".2f")]
    if any(r["rnn_sec_per_epoch"] for r in rows):
        columns.append(("RNN s/epoch", "rnn_sec_per_epoch", ".2f"))
    if any(r["full_epoch"] for r in rows):
        columns.append(("full epoch s (extrapolated)", "full_epoch", ".0f"))
    columns.append(("speed-up over the LSTM", "vs_lstm", ".2f"))
    base = sorted({r["lstm"] for r in rows if r["lstm"]})
    return (markdown_table(rows, columns) + "\n\nTraining seconds per epoch (median over epochs, evaluation "
            f"excluded); speed-up = the LSTM row's s/epoch / this row's ({', '.join(base) or 'no LSTM row'}).")


MARKERS = "osD^v<>ph*"


def plot_table(table, path):
    """Validation metric vs cumulative training time (one panel per dataset) and s/epoch bars. Every row is
    labelled as in the speed table (with its seed, lr or other varying key, and its machine where rows ran on
    several) and drawn with its own marker; a one-epoch history is a large marker."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows, metric = table["rows"], table["metric"]
    speed = speed_rows(table)
    where_of = lambda r: str(r.get("machine") or r.get("device", "?"))
    machines = list(dict.fromkeys(where_of(r) for r in rows))
    tags = {m: f"M{i + 1}" for i, m in enumerate(machines)}  # short machine tags: the full names are in the title
    labels = {id(r): s["label"].replace(f" [{r.get('machine')}]", f" [{tags[where_of(r)]}]")
              for r, s in zip(rows, speed)}
    panels = list(dict.fromkeys(r.get("dataset") for r in rows))
    n = len(panels) + 1
    cols = min(n, 3)
    fig, axes = plt.subplots(-(-n // cols), cols, figsize=(6.4 * cols, 4.6 * -(-n // cols)), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    colours, markers = {}, {}
    for kind, (_, cmap) in KIND_STYLE.items():
        same = [r for r in rows if r["model"] == kind]
        for i, r in enumerate(same):  # shades spread over the colour map's darker two thirds
            colours[id(r)] = plt.get_cmap(cmap)(0.35 + 0.6 * (i + 0.5) / len(same))
            markers[id(r)] = MARKERS[i % len(MARKERS)]
    for ax, panel in zip(axes.flat, panels):
        for r in rows:
            if r.get("dataset") != panel or not r.get("history"):
                continue
            h = r["history"]
            ax.plot([e["wall"] for e in h], [e[metric] for e in h], KIND_STYLE.get(r["model"], ("-", None))[0],
                    marker=markers.get(id(r), "o"), ms=8 if len(h) == 1 else 4, color=colours.get(id(r)),
                    label=labels[id(r)].replace(f" [{panel}]", "") if panel else labels[id(r)])
            if len(h) == 1:  # one epoch: a point, so say its value beside it
                ax.annotate(f"{h[0][metric]:.1f} after 1 epoch", (h[0]["wall"], h[0][metric]), fontsize=9,
                            xytext=(6, 4), textcoords="offset points")
        ax.set_xlabel("training wall-clock time (s)", fontsize=10)
        ax.set_ylabel(METRIC_LABELS.get(metric, metric), fontsize=10)
        if metric in LOG_SCALE:
            ax.set_yscale("log")
        ax.set_title(f"{panel + ': ' if panel else ''}{metric} vs time", fontsize=11)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2 if len(rows) > 4 else 1,
                  frameon=False)  # below the panel: the curves stay visible
    ax = axes.flat[len(panels)]
    ax.barh(range(len(speed)), [s["sec_per_epoch"] or 0 for s in speed], color=[colours.get(id(r)) for r in rows])
    ax.set_yticks(range(len(speed)), [labels[id(r)] for r in rows], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("training s/epoch (median)", fontsize=10)
    ax.set_title("s/epoch (compare rows of one machine)", fontsize=11)
    where = machines[0] if len(machines) == 1 else "; ".join(f"{tags[m]} = {m}" for m in machines)
    fig.suptitle(f"Table {table['table'][-1]}: {TABLES[table['table']]['name']}, profile {profile_of(table)}"
                 f"{' (SMOKE RUN)' if table['smoke'] else ''}, {where}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def profile_of(table):
    return ", ".join(sorted({str(r.get("profile")) for r in table["rows"]}))
