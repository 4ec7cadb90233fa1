"""Devices a machine without a GPU cannot produce on demand, for the tests: a sysfs tree with an AMD card
(`hardware.sysfs_root` points runner-manager's inventory at it)."""
import os


def amd_card(root, card, pci, total_mib, used_mib):
    dev = os.path.join(root, "class", "drm", f"card{card}", "device")
    os.makedirs(os.path.join(dev, "hwmon", "hwmon0"))
    files = {"vendor": "0x1002\n", "device": "0x73bf\n", "uevent": f"DRIVER=amdgpu\nPCI_SLOT_NAME={pci}\n",
             "mem_info_vram_total": f"{total_mib << 20}\n", "mem_info_vram_used": f"{used_mib << 20}\n", "gpu_busy_percent": "5\n",
             "hwmon/hwmon0/temp1_input": "52000\n", "hwmon/hwmon0/power1_average": "45000000\n"}
    for name, text in files.items():
        with open(os.path.join(dev, name), "w") as f:
            f.write(text)
