"""The GPU pane's figures: NVML through a fake `pynvml` module (no GPU here), the CPU's own."""
from __future__ import annotations

import sys
import threading
import types

import pytest

from gantui.common import device_lines
from gantui.engine.devicestats import DeviceStats, physical_gpu


class NVMLError(Exception):
    pass


@pytest.fixture(autouse=True)
def no_cuda(monkeypatch):
    """CUDA says nothing (as on this CPU machine, and on a GPU one alike) unless a test says what."""
    import torch

    def none(index):
        raise RuntimeError("no CUDA here")

    monkeypatch.setattr(torch.cuda, "get_device_properties", none)


SLOW = ("handle-0", "handle-GPU-slow")  # NVML's board 0 by the PCI bus, the slower of two


def fake_nvml(*, init_error: str | None = None, power_error: bool = False) -> types.ModuleType:
    """nvidia-ml-py's calls gantui makes, answering for GPU 3 (index) and GPU-abc (UUID); two boards
    in NVML's (PCI bus) order, GPU-slow (index 0, 12% busy) and GPU-fast (index 1, 97%)."""
    nvml = types.ModuleType("pynvml")
    nvml.NVMLError = NVMLError
    nvml.NVML_TEMPERATURE_GPU = 0
    nvml.calls = []

    def init():
        nvml.calls.append("init")
        if init_error:
            raise NVMLError(init_error)

    def by_index(i):
        nvml.calls.append(("index", i))
        return f"handle-{i}"

    def by_uuid(uuid):
        nvml.calls.append(("uuid", uuid))
        if uuid not in ("GPU-abc", "GPU-slow", "GPU-fast"):
            raise NVMLError("Not Found")
        return f"handle-{uuid}"

    def power(handle):
        if power_error:
            raise NVMLError("Not Supported")
        return 612_000  # mW

    nvml.nvmlInit, nvml.nvmlShutdown = init, lambda: nvml.calls.append("shutdown")
    nvml.nvmlDeviceGetHandleByIndex, nvml.nvmlDeviceGetHandleByUUID = by_index, by_uuid
    nvml.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=12 if h in SLOW else 97, memory=40)
    nvml.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=40 * 2**30, total=80 * 2**30, free=40 * 2**30)
    nvml.nvmlDeviceGetPowerUsage = power
    nvml.nvmlDeviceGetTemperature = lambda h, sensor: 64
    return nvml


def test_a_gpus_figures_through_nvml_and_cuda_visible_devices(monkeypatch):
    nvml = fake_nvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,GPU-abc")
    assert physical_gpu(0) == 3 and physical_gpu(1) == "GPU-abc"
    stats = DeviceStats("cuda", 1, interval=0.05).start()
    try:
        assert stats.unavailable is None
        assert stats.latest == {"util": 97.0, "mem": 40 * 1024.0, "mem_total": 80 * 1024.0, "power": 612.0, "temp": 64.0}
        assert nvml.calls[:2] == ["init", ("uuid", "GPU-abc")]  # one init, the handle by the UUID CUDA was given
    finally:
        stats.close()
    assert nvml.calls.count("init") == 1 and nvml.calls[-1] == "shutdown"
    row = {"devices": [{"kind": "GPU", **stats.latest}]}
    assert device_lines(row) == ["GPU0 97% 40.0/80 GiB 612 W 64°C"]


def test_cudas_device_is_found_in_nvml_by_its_uuid_where_the_two_orders_differ(monkeypatch):
    """CUDA numbers the faster board 0, NVML numbers boards by PCI bus: CUDA's device 0 is NVML's
    board 1. The pane shows the board the process trains on, found by the UUID CUDA gives."""
    import torch

    nvml = fake_nvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    cuda = ["fast", "slow"]  # fastest first; CUDA's UUIDs carry no GPU- prefix
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid=cuda[i]))
    for index, busy in ((0, 97.0), (1, 12.0)):
        stats = DeviceStats("cuda", index)
        stats.poll()
        assert stats.latest["util"] == busy and stats.unavailable is None
        assert nvml.calls[-1] == ("uuid", f"GPU-{cuda[index]}")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid="MIG-gone"))
    stats = DeviceStats("cuda", 1)  # a UUID NVML does not know: CUDA_VISIBLE_DEVICES, or the index
    stats.poll()
    assert nvml.calls[-2:] == [("uuid", "MIG-gone"), ("index", 1)] and stats.unavailable is None


def test_a_call_nvml_refuses_leaves_that_figure_out(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(power_error=True))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    stats = DeviceStats("cuda", 1)
    stats.poll()
    assert stats.latest["power"] is None and stats.latest["util"] == 97.0
    assert device_lines({"devices": [{"kind": "GPU", **stats.latest}]}) == ["GPU0 97% 40.0/80 GiB 64°C"]


@pytest.mark.parametrize("module, why", [
    (fake_nvml(init_error="Driver Not Loaded"), "NVML unavailable: Driver Not Loaded"),
    (None, "NVML unavailable: nvidia-ml-py is not installed (pip install nvidia-ml-py)"),
])
def test_without_a_driver_or_the_library_the_pane_says_why(monkeypatch, module, why):
    monkeypatch.setitem(sys.modules, "pynvml", module)  # None: the import fails
    stats = DeviceStats("cuda", 0)
    stats.poll()
    assert stats.latest is None and stats.unavailable == why
    assert device_lines({"devices_note": stats.unavailable}) == [why]


def test_a_cpu_process_shows_its_cpu_use_and_memory():
    stats = DeviceStats("cpu", interval=0.05).start()
    try:
        done = threading.Event()
        threading.Thread(target=lambda: (sum(i * i for i in range(3_000_000)), done.set())).start()
        done.wait(30)
        stats.poll()
        latest = stats.latest
    finally:
        stats.close()
    assert latest["util"] > 10 and latest["mem"] > 10 and latest["mem_total"] > latest["mem"]
    assert latest["power"] is None and latest["temp"] is None
    line, = device_lines({"devices": [{"kind": "CPU", **latest}]})
    assert line.startswith("CPU ") and line.endswith(" GiB")


async def test_the_gpu_pane_shows_a_line_per_rank():
    from gantui.ui.demo import ScriptedEngine, scripted_app

    from gantui.run import events as ev

    class TwoGPUs(ScriptedEngine):
        def run(self) -> ev.Finished:
            self.emit(ev.Started(run_dir="run", device="cuda:0", step=0, total_steps=100, steps_per_epoch=10, config={}))
            gpu = {"kind": "GPU", "util": 97.0, "mem": 40960.0, "mem_total": 81920.0, "power": 612.0, "temp": 64.0}
            self.emit(ev.Metrics({"step": 10, "epoch": 1, "loss_g": 1.0, "loss_d": 1.0, "d_real": 0.5, "d_fake": 0.5,
                                  "acc_real": 0.5, "acc_fake": 0.5, "images_per_s": 1e4,
                                  "devices": [gpu, {**gpu, "util": 12.0}]}))
            self._stop.wait(60)
            return ev.Finished("stopped", self.step)

    from support import wait_for

    app = scripted_app(TwoGPUs)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.panes.device_pane.display)
        text = str(app.panes.device_pane.render())
        assert "GPU0 97% 40.0/80 GiB 612 W 64°C" in text and "GPU1 12%" in text
        assert app.panes.device_pane.border_title == "GPUs"
        await pilot.press("q")
